// The short soak (the long one is `deno task soak`): push/pull rounds through the fault
// proxy in front of docker-registry, faults on about one request in five. Every round
// ends with an intact pulled image or a clear error; nothing corrupted, nothing left
// behind. The seed is printed; SOAK_SEED=<n> replays a run.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { registryAvailable } from "../../testing/docker_registry.ts";
import { formatSoakSummary, runSoak, soakPassed } from "../../testing/soak.ts";

describe("soak through the fault proxy", { skip: !registryAvailable }, () => {
  it(
    "20 push/pull rounds with faults: no corruption, no leftovers",
    // A guard against a hang, not a speed limit: about a minute on an idle machine,
    // three on one loaded with three busy processes.
    { timeout: 600_000 },
    async () => {
      const seed = Number(process.env.SOAK_SEED ?? Date.now() % 1_000_000);
      const summary = await runSoak({
        rounds: Number(process.env.SOAK_ROUNDS ?? 20),
        seed,
        rate: 0.2,
        scale: 0.25,
        stallTimeoutMs: 250,
      });
      const report = formatSoakSummary(summary);
      console.log(report);
      assert.ok(soakPassed(summary), `${report}\n(replay with SOAK_SEED=${seed})`);
      assert.ok(summary.faults.total >= summary.rounds, "faults were injected");
      assert.ok(summary.faults.drop > 0 && summary.faults.reset > 0 && summary.faults.stall > 0);
      assert.ok(summary.outcomes.completed >= summary.rounds / 2, "most rounds complete");
    },
  );
});
