/**
 * Command-line parsing: the command, its arguments and the global options, with the
 * environment as fallback (flags beat environment).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { COMMAND_HELP } from "./help.ts";
import type { ProgressMode } from "./progress_view.ts";

/** A command line that cannot be understood; printed with a hint, exit code 2. */
export class UsageError extends Error {
  /** What to run for help. */
  readonly hint: string;

  /**
   * @param message what was wrong
   * @param command the command, for the hint
   */
  constructor(message: string, command?: string) {
    super(message);
    this.name = "UsageError";
    this.hint = `Run "apolo-images ${command ? command + " " : ""}--help" for usage.`;
  }
}

/** Options every command takes. */
const GLOBAL_OPTIONS = {
  registry: { type: "string" },
  cluster: { type: "string" },
  org: { type: "string" },
  owner: { type: "string" },
  project: { type: "string" },
  username: { type: "string" },
  "password-stdin": { type: "boolean" },
  insecure: { type: "boolean" },
  progress: { type: "string" },
  quiet: { type: "boolean", short: "q" },
  json: { type: "boolean" },
  debug: { type: "boolean" },
  timeout: { type: "string" },
  "stall-timeout": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

/** Options of each command. */
const COMMAND_OPTIONS = {
  push: {
    input: { type: "string" },
    compression: { type: "string" },
    "compression-level": { type: "string" },
    concurrency: { type: "string" },
    resumable: { type: "boolean" },
    "gzip-engine": { type: "string" },
    "upload-mode": { type: "string" },
  },
  pull: {
    output: { type: "string" },
    format: { type: "string" },
    platform: { type: "string" },
    "all-platforms": { type: "boolean" },
    concurrency: { type: "string" },
  },
  digest: {},
  rm: { force: { type: "boolean", short: "f" } },
  ls: {
    // apolo's filters: repeatable, the current org and project by default.
    org: { type: "string", multiple: true },
    "all-orgs": { type: "boolean" },
    project: { type: "string", multiple: true },
    "all-projects": { type: "boolean" },
    long: { type: "boolean", short: "l" },
    "full-uri": { type: "boolean" },
    name: { type: "string", short: "n" },
  },
  tags: { long: { type: "boolean", short: "l" } },
  size: {},
} as const;

/** A command's name. */
export type CommandName = keyof typeof COMMAND_OPTIONS;

/**
 * The long names of the options `command` takes, its own and the global ones (what its
 * `--help` must list).
 *
 * @example
 * ```ts
 * import { optionNames } from "./options.ts";
 * console.log(optionNames("tags")); // [ "long", "registry", … ]
 * ```
 */
export function optionNames(command: CommandName): string[] {
  return [...Object.keys(COMMAND_OPTIONS[command]), ...Object.keys(GLOBAL_OPTIONS)];
}

/** A parsed command line. */
export interface CommandLine {
  /** The command, if one was given. */
  command?: CommandName;
  /** Its positional arguments. */
  args: string[];
  /** Its own options (values as given). */
  options: Record<string, string | boolean | undefined>;
  /** Registry URL of the current cluster. */
  registry?: string;
  /** Current cluster. */
  cluster: string;
  /** Current org. */
  org?: string;
  /** Current owner (project): `--owner` or its apolo name `--project`. */
  owner?: string;
  /** Every `--project` given (`ls` filters by them). */
  projects: string[];
  /** Every `--org` given (`ls` filters by them). */
  orgs: string[];
  /** Registry user name. */
  username?: string;
  /** Read the password from stdin. */
  passwordStdin: boolean;
  /** Password or token from the environment. */
  token?: string;
  /** Allow plain http to non-loopback registries. */
  insecure: boolean;
  /** Progress display. */
  progress: ProgressMode | "auto";
  /** Print data as JSON. */
  json: boolean;
  /** Stack traces and request logs. */
  debug: boolean;
  /** Overall deadline of the command, seconds. */
  timeoutSeconds?: number;
  /** Longest silence of the network in one request, seconds. */
  stallTimeoutSeconds?: number;
  /** Show help and stop. */
  help: boolean;
  /** Print the version and stop. */
  version: boolean;
}

const PROGRESS_MODES = ["auto", "tty", "plain", "json", "none"];

/** Finds the command: the first argument that is neither an option nor an option's value. */
function findCommand(args: string[]): number {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") return i + 1 < args.length ? i + 1 : -1;
    if (!arg.startsWith("-")) return i;
    const name = arg.replace(/^--?/, "");
    const spec = (GLOBAL_OPTIONS as Record<string, { type: string }>)[name];
    if (spec?.type === "string" && !arg.includes("=")) i++;
  }
  return -1;
}

/** Options that would carry a secret: refused with a pointer to the safe ways. */
const SECRET_OPTIONS = /^--?(p|password|pass|passwd|token|secret|api-key|apikey|auth)$/i;

/**
 * Refuses an unknown option before the command. Its value would otherwise be taken for
 * the command and printed back in "unknown command …" — and that value may well be a
 * password (`apolo-images --password s3cret ls`).
 */
function checkLeadingOptions(args: string[], commandAt: number): void {
  const end = commandAt >= 0 ? commandAt : args.length;
  for (let i = 0; i < end; i++) {
    const arg = args[i];
    if (arg === "--") break;
    if (!arg.startsWith("-") || arg === "-") continue;
    const name = arg.replace(/=.*$/s, "");
    const bare = name.replace(/^--?/, "");
    const known = GLOBAL_OPTIONS as Record<string, { type: string; short?: string }>;
    const spec = known[bare] ??
      Object.values(known).find((o) => o.short !== undefined && `-${o.short}` === name);
    if (spec) {
      if (spec.type === "string" && !arg.includes("=")) i++;
      continue;
    }
    if (SECRET_OPTIONS.test(name)) {
      throw new UsageError(
        `${name} is not accepted: secrets are never taken as arguments; ` +
          "use --password-stdin or the APOLO_TOKEN environment variable",
      );
    }
    throw new UsageError(`unknown option ${name}${commandAt < 0 ? "" : " before the command"}`);
  }
}

/**
 * Parses `args` (without the program name), reading `APOLO_*` variables from `env`
 * for what the flags leave open.
 *
 * @example
 * ```ts
 * import { parseCommandLine } from "./options.ts";
 * const line = parseCommandLine(["--owner", "alice", "tags", "-l", "image:app"], {});
 * console.log(line.command, line.args, line.options.long); // tags [ "image:app" ] true
 * ```
 */
export function parseCommandLine(
  args: string[],
  env: Record<string, string | undefined>,
): CommandLine {
  const at = findCommand(args);
  checkLeadingOptions(args, at);
  const name = at >= 0 ? args[at] : undefined;
  if (name !== undefined && !(name in COMMAND_OPTIONS)) {
    throw new UsageError(`unknown command ${JSON.stringify(name)}`);
  }
  const command = name as CommandName | undefined;
  const rest = at >= 0 ? [...args.slice(0, at), ...args.slice(at + 1)] : args;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: { ...GLOBAL_OPTIONS, ...(command ? COMMAND_OPTIONS[command] : {}) },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify.*$/s, ""), command);
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const progress = (values.quiet ? "none" : values.progress ?? "auto") as string;
  if (!PROGRESS_MODES.includes(progress)) {
    throw new UsageError(`--progress must be one of ${PROGRESS_MODES.join(", ")}`, command);
  }
  const options: Record<string, string | boolean | undefined> = {};
  for (const key of Object.keys(command ? COMMAND_OPTIONS[command] : {})) {
    const value = values[key];
    if (!Array.isArray(value)) options[key] = value;
  }
  const projects = many(values.project);
  const orgs = many(values.org);
  const owner = str(values.owner);
  if (owner !== undefined && command !== "ls" && projects.some((p) => p !== owner)) {
    throw new UsageError("--project and --owner name the same thing: give one of them", command);
  }
  return {
    command,
    args: parsed.positionals,
    options,
    registry: str(values.registry) ?? env.APOLO_REGISTRY,
    cluster: str(values.cluster) ?? env.APOLO_CLUSTER ?? "default",
    // With several (ls filters), the current org and project come from elsewhere.
    org: (orgs.length === 1 ? orgs[0] : undefined) ?? env.APOLO_ORG,
    owner: owner ?? (projects.length === 1 ? projects[0] : undefined) ?? env.APOLO_OWNER ??
      projects[0],
    projects,
    orgs,
    username: str(values.username) ?? env.APOLO_USERNAME,
    passwordStdin: values["password-stdin"] === true,
    token: env.APOLO_TOKEN,
    insecure: values.insecure === true,
    progress: progress as ProgressMode | "auto",
    json: values.json === true,
    debug: values.debug === true,
    timeoutSeconds: seconds(values.timeout, "timeout", command),
    stallTimeoutSeconds: seconds(values["stall-timeout"], "stall-timeout", command),
    version: values.version === true,
    help: values.help === true || (command === undefined && values.version !== true),
  };
}

/** A positive number of seconds (fractions allowed), or undefined when not given. */
function seconds(
  value: string | boolean | string[] | undefined,
  name: string,
  command: string | undefined,
): number | undefined {
  if (typeof value !== "string") return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 7 * 24 * 3600) {
    throw new UsageError(`--${name} must be a number of seconds above 0`, command);
  }
  return n;
}

function str(value: string | boolean | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** An option's values, whether it was declared repeatable or not. */
function many(value: string | boolean | string[] | undefined): string[] {
  if (Array.isArray(value)) return value;
  return typeof value === "string" ? [value] : [];
}

/** Checks a command got between `min` and `max` positional arguments. */
export function expectArgs(line: CommandLine, min: number, max: number, names: string): void {
  if (line.args.length < min || line.args.length > max) {
    const usage = COMMAND_HELP[line.command!]?.split("\n")[0] ?? "";
    throw new UsageError(
      line.args.length < min ? `missing ${names}\n${usage}` : `too many arguments\n${usage}`,
      line.command,
    );
  }
}

/** Parses a positive integer option. */
export function intOption(
  line: CommandLine,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const raw = line.options[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`, line.command);
  }
  return n;
}
