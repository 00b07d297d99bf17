import { describe, it } from "node:test";
import assert from "node:assert/strict";

import { InvalidReferenceError } from "../lib/errors.ts";
import {
  ImageNameParser,
  parseExternalImage,
  parseLocalImage,
  type TagOption,
} from "../lib/reference/parser.ts";
import { LocalImage } from "../lib/reference/local_image.ts";
import { RemoteImage } from "../lib/reference/remote_image.ts";
import { Tag } from "../lib/reference/tag.ts";

const DIGEST = "sha256:" + "0123456789abcdef".repeat(4);
const DIGEST_B = "sha256:" + "b".repeat(64);

const parser = new ImageNameParser({
  clusterName: "default",
  owner: "test-project",
  registries: { default: "https://reg.neu.ro", another: "https://example.org" },
});

const withOrg = new ImageNameParser({
  clusterName: "default",
  orgName: "test-org",
  owner: "test-project",
  registries: { default: "https://reg.neu.ro", another: "https://example.org" },
  orgNames: { another: ["other-org"] },
});

const withPort = new ImageNameParser({
  clusterName: "test-cluster",
  owner: "test-project",
  registries: { "test-cluster": "http://localhost:5000" },
});

function platform(
  name: string,
  fields: {
    cluster?: string;
    registry?: string;
    owner?: string;
    org?: string;
    tag?: string;
    digest?: string;
  } = {},
): RemoteImage {
  return RemoteImage.newPlatformImage(name, fields.registry ?? "reg.neu.ro", {
    clusterName: fields.cluster ?? "default",
    owner: fields.owner ?? "test-project",
    orgName: fields.org,
    tag: fields.tag,
    digest: fields.digest,
  });
}

/** Asserts `fn` throws an InvalidReferenceError for `reference` whose message matches `problem`. */
function rejects(fn: () => unknown, reference: string, problem: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof InvalidReferenceError, `not an InvalidReferenceError: ${error}`);
    assert.equal(error.code, "INVALID_REFERENCE");
    assert.equal(error.reference, reference);
    assert.ok(
      error.message.includes(JSON.stringify(reference)),
      `message lacks the reference: ${error.message}`,
    );
    assert.match(error.message, problem);
    return true;
  });
}

describe("RemoteImage platform images", () => {
  it("formats without org and tag", () => {
    const image = platform("ubuntu", { cluster: "test-cluster", registry: "registry.io" });
    assert.equal(image.toString(), "image://test-cluster/test-project/ubuntu");
    assert.equal(image.asDockerUrl(), "registry.io/test-project/ubuntu");
    assert.equal(image.tag, undefined);
    assert.equal(image.orgName, undefined);
  });

  it("formats with a tag", () => {
    const image = platform("ubuntu", { tag: "v10.04" });
    assert.equal(image.toString(), "image://default/test-project/ubuntu:v10.04");
    assert.equal(image.asDockerUrl(), "reg.neu.ro/test-project/ubuntu:v10.04");
  });

  it("formats with an org", () => {
    const image = platform("ubuntu", { org: "acme", tag: "1" });
    assert.equal(image.toString(), "image://default/acme/test-project/ubuntu:1");
    assert.equal(image.asDockerUrl(), "reg.neu.ro/acme/test-project/ubuntu:1");
    assert.equal(image.repository, "acme/test-project/ubuntu");
  });

  it("adds https:// with withScheme", () => {
    assert.equal(
      platform("ubuntu", { tag: "1" }).asDockerUrl(true),
      "https://reg.neu.ro/test-project/ubuntu:1",
    );
    assert.equal(
      platform("ubuntu", { org: "acme" }).asDockerUrl(true),
      "https://reg.neu.ro/acme/test-project/ubuntu",
    );
    assert.equal(
      platform("ubuntu", { registry: "localhost:5000" }).asDockerUrl(true),
      "https://localhost:5000/test-project/ubuntu",
    );
  });

  it("formats a multi-component name", () => {
    const image = platform("library/ubuntu", { tag: "1" });
    assert.equal(image.toString(), "image://default/test-project/library/ubuntu:1");
    assert.equal(image.repository, "test-project/library/ubuntu");
  });

  it("formats a digest, with and without a tag", () => {
    assert.equal(
      platform("ubuntu", { digest: DIGEST }).toString(),
      `image://default/test-project/ubuntu@${DIGEST}`,
    );
    assert.equal(
      platform("ubuntu", { tag: "1", digest: DIGEST }).asDockerUrl(),
      `reg.neu.ro/test-project/ubuntu:1@${DIGEST}`,
    );
  });

  it("has platform accessors", () => {
    const image = platform("ubuntu", { org: "acme" });
    assert.equal(image.isPlatformImage, true);
    assert.equal(image.domain, "reg.neu.ro");
    assert.equal(image.registry, "reg.neu.ro");
    assert.equal(image.clusterName, "default");
    assert.equal(image.owner, "test-project");
    assert.equal(image.orgName, "acme");
    assert.equal(image.name, "ubuntu");
  });

  it("keeps a registry with a port or an IPv6 host", () => {
    assert.equal(
      platform("a", { registry: "[::1]:5000" }).asDockerUrl(),
      "[::1]:5000/test-project/a",
    );
  });

  it("can be built with the constructor", () => {
    const image = new RemoteImage({
      name: "ubuntu",
      tag: "v10.04",
      clusterName: "test-cluster",
      registry: "registry.io",
      owner: "test-project",
    });
    assert.equal(image.asDockerUrl(), "registry.io/test-project/ubuntu:v10.04");
    assert.deepEqual(
      image,
      platform("ubuntu", {
        tag: "v10.04",
        cluster: "test-cluster",
        registry: "registry.io",
      }),
    );
  });
});

describe("RemoteImage external images", () => {
  it("formats a Docker Hub image", () => {
    const image = RemoteImage.newExternalImage("ubuntu");
    assert.equal(image.toString(), "ubuntu");
    assert.equal(image.asDockerUrl(), "ubuntu");
    assert.equal(image.isPlatformImage, false);
    assert.equal(image.registry, undefined);
    assert.equal(image.owner, undefined);
    assert.equal(image.orgName, undefined);
    assert.equal(image.clusterName, undefined);
  });

  it("formats with a tag", () => {
    const image = RemoteImage.newExternalImage("ubuntu", undefined, { tag: "v10.04" });
    assert.equal(image.toString(), "ubuntu:v10.04");
    assert.equal(image.asDockerUrl(), "ubuntu:v10.04");
  });

  it("ignores withScheme, as the SDK does", () => {
    const image = RemoteImage.newExternalImage("a/b", "ghcr.io", { tag: "1" });
    assert.equal(image.asDockerUrl(true), "ghcr.io/a/b:1");
  });

  it("keeps the registry in the Docker reference", () => {
    const image = RemoteImage.newExternalImage("a/b", "localhost:5000", { tag: "1" });
    assert.equal(image.asDockerUrl(), "localhost:5000/a/b:1");
    assert.equal(image.toString(), "localhost:5000/a/b:1");
    assert.equal(image.domain, "localhost:5000");
    assert.equal(image.repository, "a/b");
  });

  it("moves a leading registry host from the name to registry", () => {
    const image = RemoteImage.newExternalImage("ghcr.io/acme/tool");
    assert.equal(image.registry, "ghcr.io");
    assert.equal(image.name, "acme/tool");
    assert.equal(new RemoteImage({ name: "localhost/a" }).registry, "localhost");
    assert.equal(new RemoteImage({ name: "localhost:5000/a" }).registry, "localhost:5000");
  });

  it("does not take a lowercase first component for a host", () => {
    const image = RemoteImage.newExternalImage("library/ubuntu");
    assert.equal(image.registry, undefined);
    assert.equal(image.name, "library/ubuntu");
    assert.equal(image.repository, "library/ubuntu");
  });

  it("normalises Docker Hub in repository and domain", () => {
    assert.equal(RemoteImage.newExternalImage("ubuntu").repository, "library/ubuntu");
    assert.equal(RemoteImage.newExternalImage("ubuntu").domain, "docker.io");
    assert.equal(RemoteImage.newExternalImage("ubuntu", "docker.io").repository, "library/ubuntu");
    assert.equal(RemoteImage.newExternalImage("ubuntu", "index.docker.io").domain, "docker.io");
    assert.equal(
      RemoteImage.newExternalImage("ubuntu", "registry-1.docker.io").repository,
      "library/ubuntu",
    );
    assert.equal(RemoteImage.newExternalImage("bitnami/redis").repository, "bitnami/redis");
    assert.equal(RemoteImage.newExternalImage("ubuntu", "ghcr.io").repository, "ubuntu");
  });

  it("formats a digest", () => {
    const image = RemoteImage.newExternalImage("ubuntu", undefined, { digest: DIGEST });
    assert.equal(image.toString(), `ubuntu@${DIGEST}`);
    assert.equal(image.digest, DIGEST);
  });
});

describe("RemoteImage immutability and copies", () => {
  it("is frozen", () => {
    const image = platform("ubuntu");
    assert.ok(Object.isFrozen(image));
    assert.equal(Reflect.set(image, "tag", "x"), false);
    assert.equal(image.tag, undefined);
  });

  it("withTag returns a new image with the tag", () => {
    const image = platform("ubuntu", { org: "acme" });
    const tagged = image.withTag("v2");
    assert.equal(tagged.toString(), "image://default/acme/test-project/ubuntu:v2");
    assert.equal(image.tag, undefined);
    assert.notEqual(tagged, image);
    assert.deepEqual(tagged, platform("ubuntu", { org: "acme", tag: "v2" }));
  });

  it("withTag replaces an existing tag and keeps a digest", () => {
    const image = platform("ubuntu", { tag: "v1", digest: DIGEST });
    assert.equal(image.withTag("v2").asDockerUrl(), `reg.neu.ro/test-project/ubuntu:v2@${DIGEST}`);
  });

  it("withTag works on external images", () => {
    const image = RemoteImage.newExternalImage("a/b", "ghcr.io", { tag: "1" }).withTag("2");
    assert.equal(image.toString(), "ghcr.io/a/b:2");
    assert.equal(image.registry, "ghcr.io");
  });

  it("withTag validates the tag", () => {
    rejects(
      () => platform("ubuntu").withTag("-bad"),
      "image://default/test-project/ubuntu:-bad",
      /tag "-bad"/,
    );
    rejects(
      () => platform("ubuntu").withTag(""),
      "image://default/test-project/ubuntu:",
      /empty tag/,
    );
  });

  it("withDigest pins a digest and keeps the tag", () => {
    const image = platform("ubuntu", { tag: "1" }).withDigest(DIGEST_B);
    assert.equal(image.toString(), `image://default/test-project/ubuntu:1@${DIGEST_B}`);
    rejects(
      () => platform("ubuntu").withDigest("sha256:xyz"),
      "image://default/test-project/ubuntu@sha256:xyz",
      /invalid digest "sha256:xyz"/,
    );
  });
});

describe("RemoteImage validation", () => {
  it("needs registry, cluster and owner together", () => {
    rejects(
      () => new RemoteImage({ name: "x", owner: "a" }),
      "a/x",
      /needs registry, cluster and owner together; missing: registry, cluster$/,
    );
    rejects(
      () => new RemoteImage({ name: "x", clusterName: "c" }),
      "image://c/x",
      /missing: registry, owner$/,
    );
    rejects(
      () => new RemoteImage({ name: "x", clusterName: "c", registry: "r.io" }),
      "image://c/x",
      /missing: owner$/,
    );
    rejects(
      () => new RemoteImage({ name: "x", owner: "a", registry: "r.io" }),
      "r.io/a/x",
      /missing: cluster$/,
    );
    rejects(
      () => new RemoteImage({ name: "x", orgName: "o" }),
      "o/x",
      /missing: registry, cluster, owner$/,
    );
  });

  it("rejects a bad owner, org or cluster", () => {
    rejects(
      () => platform("x", { owner: "Bob" }),
      "image://default/Bob/x",
      /invalid owner "Bob": must be lowercase/,
    );
    rejects(() => platform("x", { owner: "" }), "image://default//x", /empty owner/);
    rejects(
      () => platform("x", { org: "a_" }),
      "image://default/a_/test-project/x",
      /invalid org name "a_"/,
    );
    rejects(
      () => platform("x", { cluster: "my cluster" }),
      "image://my cluster/test-project/x",
      /invalid cluster name "my cluster"/,
    );
    rejects(() => platform("x", { cluster: "" }), "image:///test-project/x", /empty cluster name/);
  });

  it("rejects a bad registry host", () => {
    rejects(
      () => platform("x", { registry: "" }),
      "image://default/test-project/x",
      /empty registry host/,
    );
    rejects(
      () => platform("x", { registry: "-bad.io" }),
      "image://default/test-project/x",
      /invalid registry host "-bad.io"/,
    );
    rejects(
      () => RemoteImage.newExternalImage("x", "host:port"),
      "host:port/x",
      /invalid registry port "port"/,
    );
    rejects(
      () => RemoteImage.newExternalImage("x", "host:70000"),
      "host:70000/x",
      /invalid registry port "70000"/,
    );
  });

  it("rejects a bad name", () => {
    rejects(
      () => platform("Ubuntu"),
      "image://default/test-project/Ubuntu",
      /"Ubuntu": must be lowercase/,
    );
    rejects(() => platform(""), "image://default/test-project/", /empty image name/);
    rejects(() => platform("a//b"), "image://default/test-project/a//b", /empty path component/);
    rejects(() => RemoteImage.newExternalImage("a-"), "a-", /invalid image name component "a-"/);
    rejects(() => RemoteImage.newExternalImage("ghcr.io/"), "ghcr.io/", /empty image name/);
  });

  it("rejects a name longer than 255 characters in all", () => {
    const long = "a".repeat(250);
    rejects(
      () => RemoteImage.newExternalImage(long, "ghcr.io"),
      `ghcr.io/${long}`,
      /longer than 255/,
    );
    assert.equal(RemoteImage.newExternalImage("a".repeat(255)).name.length, 255);
    rejects(
      () => RemoteImage.newExternalImage("a".repeat(256)),
      "a".repeat(256),
      /longer than 255/,
    );
  });

  it("rejects a bad tag or digest", () => {
    rejects(
      () => RemoteImage.newExternalImage("x", undefined, { tag: "a/b" }),
      "x:a/b",
      /invalid tag "a\/b"/,
    );
    rejects(
      () => RemoteImage.newExternalImage("x", undefined, { digest: "sha256:1" }),
      "x@sha256:1",
      /invalid digest "sha256:1"/,
    );
  });
});

describe("LocalImage and Tag", () => {
  it("formats name and tag", () => {
    assert.equal(new LocalImage("ubuntu").toString(), "ubuntu");
    assert.equal(new LocalImage("ubuntu", "v10.04").toString(), "ubuntu:v10.04");
    assert.equal(
      new LocalImage("localhost:5000/project/ubuntu", "1").toString(),
      "localhost:5000/project/ubuntu:1",
    );
    const image = new LocalImage("ubuntu", "1");
    assert.equal(image.name, "ubuntu");
    assert.equal(image.tag, "1");
  });

  it("is frozen", () => {
    const image = new LocalImage("ubuntu");
    assert.ok(Object.isFrozen(image));
    assert.equal(Reflect.set(image, "name", "x"), false);
  });

  it("validates name and tag", () => {
    rejects(() => new LocalImage("UBUNTU"), "UBUNTU", /"UBUNTU": must be lowercase/);
    rejects(() => new LocalImage(""), "", /empty image name/);
    rejects(() => new LocalImage("ubuntu", ".x"), "ubuntu:.x", /invalid tag ".x"/);
  });

  it("Tag holds name and size", () => {
    const tag = new Tag("latest", 1234);
    assert.equal(tag.name, "latest");
    assert.equal(tag.size, 1234);
    assert.ok(Object.isFrozen(tag));
    assert.equal(new Tag("v1", 0).size, 0);
  });

  it("Tag rejects a bad name or size", () => {
    rejects(() => new Tag("-x", 1), "-x", /invalid tag "-x"/);
    rejects(() => new Tag("x", -1), "x", /size must be a non-negative integer, got -1/);
    rejects(() => new Tag("x", 1.5), "x", /size/);
    rejects(() => new Tag("x", Number.NaN), "x", /size/);
  });
});

describe("parseLocalImage", () => {
  it("defaults the tag to latest", () => {
    assert.deepEqual(parseLocalImage("ubuntu"), new LocalImage("ubuntu", "latest"));
    assert.deepEqual(parser.parseLocal("ubuntu"), new LocalImage("ubuntu", "latest"));
  });

  it("reads a tag and round-trips", () => {
    const parsed = parseLocalImage("ubuntu:v10.04");
    assert.deepEqual(parsed, new LocalImage("ubuntu", "v10.04"));
    assert.deepEqual(parseLocalImage(parsed.toString()), parsed);
  });

  it("keeps a registry host in the name", () => {
    assert.deepEqual(
      parseLocalImage("reg.neu.ro/project/ubuntu:v10.04"),
      new LocalImage("reg.neu.ro/project/ubuntu", "v10.04"),
    );
    assert.deepEqual(
      parseLocalImage("localhost:5000/project/ubuntu:v10.04"),
      new LocalImage("localhost:5000/project/ubuntu", "v10.04"),
    );
    assert.deepEqual(
      parseLocalImage("localhost:5000/ubuntu"),
      new LocalImage("localhost:5000/ubuntu", "latest"),
    );
  });

  it("honours tag options", () => {
    assert.equal(parseLocalImage("ubuntu", { tagOption: "allow" }).tag, undefined);
    assert.equal(parseLocalImage("ubuntu:1", { tagOption: "allow" }).tag, "1");
    assert.equal(parseLocalImage("ubuntu", { tagOption: "deny" }).tag, undefined);
    rejects(
      () => parseLocalImage("ubuntu:1", { tagOption: "deny" }),
      "ubuntu:1",
      /tag "1" is not allowed/,
    );
  });

  it("rejects what the SDK rejects", () => {
    rejects(() => parseLocalImage(""), "", /empty image reference/);
    rejects(() => parseLocalImage("-zxc"), "-zxc", /must not start with '-'/);
    rejects(
      () => parseLocalImage("image://default/ubuntu"),
      "image://default/ubuntu",
      /image: scheme is not allowed for a local image/,
    );
    rejects(() => parseLocalImage("image:ubuntu"), "image:ubuntu", /image: scheme is not allowed/);
    rejects(() => parseLocalImage("image:latest"), "image:latest", /ambiguous/);
    rejects(() => parseLocalImage("http://ubuntu"), "http://ubuntu", /unsupported scheme "http:"/);
    rejects(() => parseLocalImage("ubuntu:v10.04:LTS"), "ubuntu:v10.04:LTS", /too many colons/);
    rejects(() => parseLocalImage("image#%2d?ß:tag"), "image#%2d?ß:tag", /character "ß"/);
    rejects(() => parseLocalImage("ubuntu:"), "ubuntu:", /empty tag/);
    rejects(() => parseLocalImage(":latest"), ":latest", /empty image name/);
    rejects(() => parseLocalImage("Ubuntu"), "Ubuntu", /must be lowercase/);
  });

  it("reads a digest, with or without a tag, and checks it", () => {
    const image = parseLocalImage(`ubuntu@${DIGEST}`);
    assert.deepEqual([image.name, image.tag, image.digest], ["ubuntu", undefined, DIGEST]);
    assert.equal(parseLocalImage(`ubuntu:1@${DIGEST}`).tag, "1");
    rejects(
      () => parseLocalImage("ubuntu@sha256:12"),
      "ubuntu@sha256:12",
      /invalid digest "sha256:12"/,
    );
    rejects(
      () => new LocalImage("ubuntu", "1", "md5:x"),
      "ubuntu:1@md5:x",
      /unsupported digest algorithm "md5"/,
    );
  });
});

describe("parseExternalImage", () => {
  it("reads a Docker Hub name", () => {
    const image = parseExternalImage("ubuntu");
    assert.deepEqual(image, RemoteImage.newExternalImage("ubuntu", undefined, { tag: "latest" }));
    assert.equal(image.repository, "library/ubuntu");
    assert.equal(image.domain, "docker.io");
  });

  it("reads docker.io references", () => {
    const image = parseExternalImage("docker.io/library/ubuntu:22.04");
    assert.equal(image.registry, "docker.io");
    assert.equal(image.name, "library/ubuntu");
    assert.equal(image.repository, "library/ubuntu");
    assert.equal(image.asDockerUrl(), "docker.io/library/ubuntu:22.04");
    assert.equal(parseExternalImage("docker.io/ubuntu").repository, "library/ubuntu");
  });

  it("reads a registry with a port", () => {
    const image = parseExternalImage("localhost:5000/a/b:tag");
    assert.deepEqual(image, RemoteImage.newExternalImage("a/b", "localhost:5000", { tag: "tag" }));
    assert.equal(image.asDockerUrl(), "localhost:5000/a/b:tag");
    assert.equal(parseExternalImage("localhost:5000/ubuntu").tag, "latest");
  });

  it("reads hosts Docker recognises", () => {
    assert.equal(parseExternalImage("localhost/a").registry, "localhost");
    assert.equal(parseExternalImage("ghcr.io/a/b").registry, "ghcr.io");
    assert.equal(parseExternalImage("Registry/a").registry, "Registry");
    assert.equal(parseExternalImage("[::1]:5000/a").registry, "[::1]:5000");
    assert.equal(parseExternalImage("127.0.0.1:5000/a").registry, "127.0.0.1:5000");
    assert.equal(parseExternalImage("a/b/c").registry, undefined);
  });

  it("reads a digest, without defaulting the tag", () => {
    const image = parseExternalImage(`ubuntu@${DIGEST}`);
    assert.equal(image.digest, DIGEST);
    assert.equal(image.tag, undefined);
    assert.equal(image.toString(), `ubuntu@${DIGEST}`);
  });

  it("reads a tag and a digest", () => {
    const image = parseExternalImage(`localhost:5000/a:1@${DIGEST}`);
    assert.equal(image.registry, "localhost:5000");
    assert.equal(image.tag, "1");
    assert.equal(image.digest, DIGEST);
    assert.equal(image.toString(), `localhost:5000/a:1@${DIGEST}`);
  });

  it("accepts Docker's separators", () => {
    for (const name of ["a.b", "a_b", "a__b", "a-b", "a---b", "a1/b2.c_d-e", "0"]) {
      assert.equal(parseExternalImage(name).name, name);
    }
  });

  it("accepts tags up to 128 characters", () => {
    const tag = "A" + "b".repeat(127);
    assert.equal(parseExternalImage(`x:${tag}`).tag, tag);
    assert.equal(parseExternalImage("x:_.-A9").tag, "_.-A9");
  });

  it("rejects image: references", () => {
    rejects(
      () => parseExternalImage("image:ubuntu"),
      "image:ubuntu",
      /needs the platform configuration/,
    );
  });
});

describe("ImageNameParser configuration", () => {
  const config = (url: string) =>
    new ImageNameParser({ clusterName: "c", owner: "o", registries: { c: url } });

  for (
    const [url, host] of [
      ["http://reg.neu.ro", "reg.neu.ro"],
      ["https://reg.neu.ro", "reg.neu.ro"],
      ["https://reg.neu.ro/bla/bla", "reg.neu.ro"],
      ["http://reg.neu.ro:5000", "reg.neu.ro:5000"],
      ["http://reg.neu.ro:5000/bla/bla", "reg.neu.ro:5000"],
      ["https://reg.neu.ro:443", "reg.neu.ro:443"],
      ["reg.neu.ro", "reg.neu.ro"],
      ["reg.neu.ro:5000", "reg.neu.ro:5000"],
      ["https://user:secret@reg.neu.ro", "reg.neu.ro"],
    ]
  ) {
    it(`keeps the host of ${url}`, () => assert.equal(config(url).registryOf("c"), host));
  }

  for (const url of ["", "https://", "https:///bla/bla"]) {
    it(`rejects the empty host of ${JSON.stringify(url)}`, () => {
      rejects(() => config(url), url, /empty host in registry URL/);
    });
  }

  it("rejects a bad registry host without showing credentials", () => {
    rejects(
      () => config("https://u:secret@bad_host"),
      "https://bad_host",
      /invalid registry host "bad_host"/,
    );
  });

  it("exposes the current cluster, org and owner", () => {
    assert.equal(withOrg.clusterName, "default");
    assert.equal(withOrg.orgName, "test-org");
    assert.equal(withOrg.owner, "test-project");
    assert.equal(parser.orgName, undefined);
    assert.ok(Object.isFrozen(parser));
  });

  it("rejects bad configured names", () => {
    rejects(
      () => new ImageNameParser({ clusterName: "Big", owner: "o", registries: {} }),
      "Big",
      /invalid cluster name "Big": must be lowercase/,
    );
    rejects(
      () => new ImageNameParser({ clusterName: "c", owner: "O", registries: {} }),
      "O",
      /invalid owner "O"/,
    );
    rejects(
      () => new ImageNameParser({ clusterName: "c", orgName: "-o", owner: "o", registries: {} }),
      "-o",
      /invalid org name "-o"/,
    );
    rejects(
      () =>
        new ImageNameParser({
          clusterName: "c",
          owner: "o",
          registries: {},
          orgNames: { c: ["Org"] },
        }),
      "Org",
      /invalid org name "Org"/,
    );
  });

  it("registryOf rejects an unknown cluster", () => {
    rejects(
      () => parser.registryOf("nope"),
      "nope",
      /unknown cluster "nope" \(known clusters: default, another\)/,
    );
  });
});

describe("ImageNameParser.parseRemote: image: forms", () => {
  it("image://cluster/owner/name:tag", () => {
    assert.deepEqual(
      parser.parseRemote("image://another/project/ubuntu:v10.04"),
      platform("ubuntu", {
        cluster: "another",
        registry: "example.org",
        owner: "project",
        tag: "v10.04",
      }),
    );
  });

  it("image://cluster/owner/name without a tag gets latest", () => {
    assert.deepEqual(
      parser.parseRemote("image://another/project/ubuntu"),
      platform("ubuntu", {
        cluster: "another",
        registry: "example.org",
        owner: "project",
        tag: "latest",
      }),
    );
  });

  it("image://cluster/owner/a/b has a multi-component name", () => {
    const image = parser.parseRemote("image://another/project/library/ubuntu:v10.04");
    assert.equal(image.owner, "project");
    assert.equal(image.name, "library/ubuntu");
    assert.equal(image.orgName, undefined);
  });

  it("image:name takes the current cluster, org and owner", () => {
    assert.deepEqual(parser.parseRemote("image:ubuntu"), platform("ubuntu", { tag: "latest" }));
    assert.deepEqual(
      parser.parseRemote("image:ubuntu:v10.04"),
      platform("ubuntu", { tag: "v10.04" }),
    );
    assert.deepEqual(
      withOrg.parseRemote("image:ubuntu:v10.04"),
      platform("ubuntu", { org: "test-org", tag: "v10.04" }),
    );
  });

  it("image:a/b keeps the slash in the name", () => {
    assert.deepEqual(
      parser.parseRemote("image:library/ubuntu:v10.04"),
      platform("library/ubuntu", { tag: "v10.04" }),
    );
  });

  it("image:5000 is a numeric name", () => {
    assert.deepEqual(parser.parseRemote("image:5000"), platform("5000", { tag: "latest" }));
  });

  it("image:/owner/name takes the current cluster and org", () => {
    assert.deepEqual(
      parser.parseRemote("image:/project/ubuntu:v10.04"),
      platform("ubuntu", { owner: "project", tag: "v10.04" }),
    );
    assert.deepEqual(
      withOrg.parseRemote("image:/project/ubuntu:v10.04"),
      platform("ubuntu", { owner: "project", org: "test-org", tag: "v10.04" }),
    );
    assert.deepEqual(
      parser.parseRemote("image:/project/library/ubuntu"),
      platform("library/ubuntu", { owner: "project", tag: "latest" }),
    );
  });

  it("image:/test-org/... is never read as an org", () => {
    const image = withOrg.parseRemote("image:/test-org/a/b");
    assert.equal(image.orgName, "test-org");
    assert.equal(image.owner, "test-org");
    assert.equal(image.name, "a/b");
  });

  for (const slashes of ["///", "////"]) {
    it(`image:${slashes}owner/name is the short absolute form`, () => {
      assert.deepEqual(
        parser.parseRemote(`image:${slashes}project/ubuntu:v10.04`),
        platform("ubuntu", { owner: "project", tag: "v10.04" }),
      );
      assert.deepEqual(
        parser.parseRemote(`image:${slashes}project/library/ubuntu`),
        platform("library/ubuntu", { owner: "project", tag: "latest" }),
      );
    });
  }

  it("reads a digest", () => {
    const image = parser.parseRemote(`image://default/project/ubuntu@${DIGEST}`);
    assert.equal(image.digest, DIGEST);
    assert.equal(image.tag, undefined);
    assert.equal(image.asDockerUrl(), `reg.neu.ro/project/ubuntu@${DIGEST}`);
    assert.equal(parser.parseRemote(`image:ubuntu:1@${DIGEST}`).tag, "1");
  });

  it("parsePlatform reads the same forms", () => {
    assert.deepEqual(
      parser.parsePlatform("image://another/project/ubuntu:v10.04"),
      parser.parseRemote("image://another/project/ubuntu:v10.04"),
    );
  });
});

describe("ImageNameParser.parseRemote: orgs in long forms", () => {
  it("reads the configured org", () => {
    assert.deepEqual(
      withOrg.parseRemote("image://another/test-org/project/ubuntu:v10.04"),
      platform("ubuntu", {
        cluster: "another",
        registry: "example.org",
        org: "test-org",
        owner: "project",
        tag: "v10.04",
      }),
    );
  });

  it("reads an org listed for the cluster", () => {
    const image = withOrg.parseRemote("image://another/other-org/project/ubuntu");
    assert.equal(image.orgName, "other-org");
    assert.equal(image.owner, "project");
    assert.equal(image.name, "ubuntu");
  });

  it("reads orgNames of one cluster only for that cluster", () => {
    const image = withOrg.parseRemote("image://default/other-org/project/ubuntu");
    assert.equal(image.orgName, undefined);
    assert.equal(image.owner, "other-org");
    assert.equal(image.name, "project/ubuntu");
  });

  it("reads an unknown first segment as the owner (the SDK's ambiguity)", () => {
    const image = withOrg.parseRemote("image://another/org/project/ubuntu:v10.04");
    assert.equal(image.orgName, undefined);
    assert.equal(image.owner, "org");
    assert.equal(image.name, "project/ubuntu");
    const noOrg = parser.parseRemote("image://another/test-org/project/ubuntu");
    assert.equal(noOrg.orgName, undefined);
    assert.equal(noOrg.owner, "test-org");
  });

  it("reads an org-named segment as the owner when only a name follows", () => {
    const image = withOrg.parseRemote("image://default/test-org/ubuntu");
    assert.equal(image.orgName, undefined);
    assert.equal(image.owner, "test-org");
    assert.equal(image.name, "ubuntu");
  });

  it("reads the org in the registry form", () => {
    const image = withOrg.parseRemote("reg.neu.ro/test-org/project/ubuntu:1");
    assert.equal(image.orgName, "test-org");
    assert.equal(image.owner, "project");
    assert.equal(image.toString(), "image://default/test-org/project/ubuntu:1");
  });
});

describe("ImageNameParser.parseRemote: registry and Docker forms", () => {
  it("reads a name under a platform registry host", () => {
    const image = parser.parseRemote("reg.neu.ro/project/image:tag");
    assert.equal(image.toString(), "image://default/project/image:tag");
    assert.deepEqual(image, platform("image", { owner: "project", tag: "tag" }));
    assert.equal(parser.parseRemote("example.org/p/a/b").clusterName, "another");
  });

  it("reads a platform registry with a port", () => {
    const expected = platform("library/ubuntu", {
      cluster: "test-cluster",
      registry: "localhost:5000",
      owner: "project",
      tag: "v10.04",
    });
    assert.deepEqual(
      withPort.parseRemote("image://test-cluster/project/library/ubuntu:v10.04"),
      expected,
    );
    assert.deepEqual(
      withPort.parseRemote("localhost:5000/project/library/ubuntu:v10.04"),
      expected,
    );
    assert.deepEqual(
      withPort.parsePlatform("localhost:5000/project/library/ubuntu:v10.04"),
      expected,
    );
  });

  it("reads another port on the same host as an external image", () => {
    assert.deepEqual(
      withPort.parseRemote("example.com:9999/project/library/ubuntu:v10.04"),
      RemoteImage.newExternalImage("project/library/ubuntu", "example.com:9999", { tag: "v10.04" }),
    );
    assert.equal(withPort.parseRemote("localhost:9999/a/b").isPlatformImage, false);
  });

  it("reads plain Docker references as external images", () => {
    assert.deepEqual(parser.parseRemote("ubuntu"), parseExternalImage("ubuntu"));
    assert.deepEqual(parser.parseRemote("ubuntu:v10.04"), parseExternalImage("ubuntu:v10.04"));
    assert.equal(parser.parseRemote("ubuntu").repository, "library/ubuntu");
    assert.equal(parser.parseRemote("docker.io/library/ubuntu").isPlatformImage, false);
    assert.equal(parser.parseRemote(`ubuntu@${DIGEST}`).digest, DIGEST);
  });

  it("parsePlatform refuses non-platform references", () => {
    for (
      const text of [
        "ubuntu",
        "ubuntu:latest",
        "library/ubuntu",
        "docker.io/library/ubuntu:v10.04",
        "something/docker.io/library/ubuntu",
      ]
    ) {
      rejects(
        () => parser.parsePlatform(text),
        text,
        /needs the image: scheme or a platform registry host \(reg\.neu\.ro, example\.org\)/,
      );
    }
    rejects(
      () => withPort.parsePlatform("localhost:9999/project/library/ubuntu:v10.04"),
      "localhost:9999/project/library/ubuntu:v10.04",
      /platform registry host \(localhost:5000\)/,
    );
    rejects(
      () => parser.parsePlatform("http://ubuntu"),
      "http://ubuntu",
      /unsupported scheme "http:"/,
    );
  });
});

describe("tag options", () => {
  const cases: [TagOption, string, string | undefined][] = [
    ["default", "image:ubuntu", "latest"],
    ["allow", "image:ubuntu", undefined],
    ["deny", "image:ubuntu", undefined],
    ["default", "image:ubuntu:1", "1"],
    ["allow", "image:ubuntu:1", "1"],
    ["default", "ubuntu", "latest"],
    ["allow", "ubuntu", undefined],
    ["deny", "ubuntu", undefined],
    ["allow", "reg.neu.ro/p/ubuntu:2", "2"],
    ["deny", "image://default/project/ubuntu", undefined],
  ];
  for (const [tagOption, text, tag] of cases) {
    it(`${tagOption}: ${text} has tag ${tag}`, () => {
      assert.equal(parser.parseRemote(text, { tagOption }).tag, tag);
    });
  }

  it("deny rejects a tag in every form", () => {
    for (
      const text of [
        "image:game:latest",
        "image:game:mega",
        "image:/p/game:1",
        "image://default/p/game:1",
        "reg.neu.ro/p/game:1",
        "ubuntu:latest",
      ]
    ) {
      rejects(
        () => parser.parseRemote(text, { tagOption: "deny" }),
        text,
        /tag "[a-z0-9]+" is not allowed here/,
      );
    }
  });

  it("deny rejects a digest", () => {
    const text = `image:game@${DIGEST}`;
    rejects(
      () => parser.parseRemote(text, { tagOption: "deny" }),
      text,
      /digest "sha256:[0-9a-f]+" is not allowed here/,
    );
  });

  it("deny still reports too many colons first", () => {
    rejects(
      () => parser.parseRemote("image:game:v2.0:latest", { tagOption: "deny" }),
      "image:game:v2.0:latest",
      /too many colons/,
    );
  });

  it("deny reads what list() builds from _catalog", () => {
    const image = withOrg.parseRemote("image://default/test-org/project/ubuntu", {
      tagOption: "deny",
    });
    assert.equal(image.tag, undefined);
    assert.equal(image.repository, "test-org/project/ubuntu");
    assert.equal(image.withTag("v1").toString(), "image://default/test-org/project/ubuntu:v1");
  });

  it("an unknown option is a TypeError", () => {
    assert.throws(
      () => parser.parseRemote("image:x", { tagOption: "maybe" as TagOption }),
      TypeError,
    );
  });
});

describe("rejections name the wrong part", () => {
  const cases: [string, RegExp][] = [
    ["", /empty image reference/],
    ["-zxc", /must not start with '-'/],
    ["image:latest", /ambiguous: .*image:latest:latest/],
    ["image://", /no image name/],
    ["image:///", /no image name: expected image:\/<owner>\/<name>/],
    ["image:", /no image name: expected image:<name>/],
    ["image:/ubuntu", /no image name: expected image:\/<owner>\/<name>/],
    ["image:/ubuntu:v10.04", /no image name/],
    ["image:///ubuntu", /no image name/],
    ["image:////ubuntu:v10.04", /no image name/],
    ["image://default/project", /no image name: expected image:\/\/<cluster>\//],
    ["image://default/project/", /no image name/],
    ["image://another/ubuntu", /no image name/],
    ["reg.neu.ro/ubuntu", /no image name: expected <registry-host>\//],
    [
      "image://ubuntu:v10.04",
      /port is not allowed in an image: URI \(cluster part "ubuntu:v10.04"\)/,
    ],
    ["image://default:443/project/ubuntu", /port is not allowed/],
    [
      "image://unknown-cluster/project/ubuntu",
      /unknown cluster "unknown-cluster" \(known clusters: default, another\)/,
    ],
    ["image://Default/project/ubuntu", /invalid cluster name "Default": must be lowercase/],
    ["image://de!fault/project/ubuntu", /invalid cluster name "de!fault"/],
    ["image://default/project/ubuntu:v10.04?key=value", /query part "\?key=value" is not allowed/],
    ["image:ubuntu?", /query part "\?" is not allowed/],
    ["image:5000?key=value", /query part/],
    ["image://default/project/ubuntu#fragment", /fragment part "#fragment" is not allowed/],
    ["image:ubuntu#", /fragment part "#" is not allowed/],
    ["image:ubuntu:v10.04:latest", /too many colons in "ubuntu:v10.04:latest"/],
    ["image://default/project/ubuntu:", /empty tag after ':'/],
    ["image://default/Project/ubuntu", /invalid owner "Project": must be lowercase/],
    ["image://default/pro_/ubuntu", /invalid owner "pro_"/],
    ["image://default/project/Ubuntu", /invalid image name component "Ubuntu": must be lowercase/],
    [
      "image://default/project/ubuntu%23%252d%3F%C3%9F:v10.04",
      /invalid image name component "ubuntu%23%252d%3F%C3%9F"/,
    ],
    ["image://default/project/a//b", /empty path component in image name "a\/\/b"/],
    ["image:a//b", /empty path component/],
    ["image://default/project/ubuntu:-x", /invalid tag "-x"/],
    ["image:ubuntu:v1/x", /invalid image name component "ubuntu:v1": ':' may only start the tag/],
    [
      "image:ubuntu@sha256:abc",
      /invalid digest "sha256:abc": sha256 needs 64 lowercase hex digits/,
    ],
    [
      `image:ubuntu@${DIGEST.toUpperCase()}`,
      /invalid digest "SHA256:[0-9A-F]{64}": expected sha256:/,
    ],
    ["ubuntu@sha256:" + "A".repeat(64), /sha256 needs 64 lowercase hex digits/],
    ["ubuntu@sha256:" + "a".repeat(63), /sha256 needs 64 lowercase hex digits/],
    ["ubuntu@md5:abcdef", /unsupported digest algorithm "md5": only sha256 is supported/],
    ["ubuntu@sha256", /invalid digest "sha256": expected sha256:<64 hex digits>/],
    ["ubuntu@", /empty digest after '@'/],
    [`ubuntu@${DIGEST}@${DIGEST}`, /more than one '@'/],
    [`@${DIGEST}`, /empty image name/],
    ["ubuntu:", /empty tag after ':'/],
    ["library/ubuntu:", /empty tag after ':'/],
    ["localhost:5000/ubuntu:", /empty tag after ':'/],
    [":latest", /empty image name/],
    ["ubuntu:v10.04:LTS", /too many colons in "ubuntu:v10.04:LTS"/],
    ["localhost:5000/ubuntu:v10.04:LTS", /too many colons in "ubuntu:v10.04:LTS"/],
    ["localhost:9000:latest", /too many colons in "localhost:9000:latest"/],
    ["localhost:5000/ubuntu:v10/04", /"ubuntu:v10": ':' may only start the tag/],
    ["ubuntu:v1/x", /invalid registry port "v1" in "ubuntu:v1"/],
    ["image://default/o:x/ubuntu", /invalid owner "o:x": ':' may only start the tag/],
    ["x:" + "a".repeat(129), /tag is longer than 128 characters \(129\)/],
    ["x:.hidden", /invalid tag ".hidden": a tag is letters, digits/],
    ["x:-dash", /invalid tag "-dash"/],
    ["x:a+b", /invalid tag "a\+b"/],
    ["UBUNTU", /invalid image name component "UBUNTU": must be lowercase/],
    ["a/B", /invalid image name component "B": must be lowercase/],
    [
      "a..b",
      /invalid image name component "a\.\.b": must be lowercase letters and digits separated by/,
    ],
    ["_a", /invalid image name component "_a"/],
    ["a-", /invalid image name component "a-"/],
    ["a___b", /invalid image name component "a___b"/],
    ["a/", /empty path component/],
    ["a//b", /empty path component/],
    ["a" + "/b".repeat(130), /longer than 255 characters/],
    ["bad_host.io/a", /invalid registry host "bad_host.io"/],
    ["-host.io/a", /must not start with '-'/],
    ["host-.io/a", /invalid registry host "host-.io"/],
    ["localhost:99999/a", /invalid registry port "99999" in "localhost:99999"/],
    ["localhost:/a", /invalid registry port ""/],
    ["[::1/a", /invalid registry host "\[::1"/],
    ["[zz]:5000/a", /invalid registry host "\[zz\]:5000"/],
    ["http://ubuntu", /unsupported scheme "http:" \(only image: is allowed\)/],
    ["docker://ubuntu", /unsupported scheme "docker:"/],
    ["ubuntu latest", /character " " is not allowed/],
    ["ubuntu\n", /character "\\n" is not allowed/],
    ["ubüntu", /character "ü" is not allowed/],
    ["ubuntu?x", /invalid image name component "ubuntu\?x"/],
  ];
  for (const [text, problem] of cases) {
    it(`${JSON.stringify(text.length > 60 ? text.slice(0, 60) + "…" : text)}`, () => {
      rejects(() => parser.parseRemote(text), text, problem);
    });
  }

  it("hides a user name or password given in an image: URI", () => {
    rejects(
      () => parser.parseRemote("image://user@default/project/ubuntu"),
      "image://***@default/project/ubuntu",
      /a user name is not allowed in an image: URI/,
    );
    for (const userinfo of [":password", ":", "user:password"]) {
      assert.throws(
        () => parser.parseRemote(`image://${userinfo}@default/project/ubuntu`),
        (error: unknown) => {
          assert.ok(error instanceof InvalidReferenceError);
          assert.match(error.message, /a password is not allowed in an image: URI/);
          assert.ok(!error.message.includes("password@"), error.message);
          assert.equal(error.reference, "image://***@default/project/ubuntu");
          return true;
        },
      );
    }
  });

  it("reports an unknown current cluster on short forms", () => {
    const lost = new ImageNameParser({
      clusterName: "gone",
      owner: "o",
      registries: { default: "reg.neu.ro" },
    });
    rejects(
      () => lost.parseRemote("image:ubuntu"),
      "image:ubuntu",
      /unknown cluster "gone" \(known clusters: default\)/,
    );
    assert.equal(lost.parseRemote("ubuntu").isPlatformImage, false);
  });

  it("every rejection is an InvalidReferenceError", () => {
    for (const [text] of cases) {
      assert.throws(() => parser.parseRemote(text), InvalidReferenceError);
    }
  });
});

describe("round trips", () => {
  const images = [
    platform("ubuntu"),
    platform("ubuntu", { tag: "v10.04" }),
    platform("library/ubuntu", { tag: "1" }),
    platform("ubuntu", { cluster: "another", registry: "example.org", owner: "bob", tag: "x" }),
    platform("ubuntu", { digest: DIGEST }),
    platform("ubuntu", { tag: "1", digest: DIGEST }),
    platform("a.b_c-d", { tag: "Z_.-9" }),
  ];
  for (const image of images) {
    it(`toString → parseRemote: ${image}`, () => {
      assert.deepEqual(parser.parseRemote(image.toString(), { tagOption: "allow" }), image);
    });
    it(`asDockerUrl → parseRemote: ${image}`, () => {
      assert.deepEqual(parser.parseRemote(image.asDockerUrl(), { tagOption: "allow" }), image);
    });
  }

  const orgImages = [
    platform("ubuntu", { org: "test-org", tag: "1" }),
    platform("library/ubuntu", { org: "test-org" }),
    platform("ubuntu", { org: "other-org", cluster: "another", registry: "example.org" }),
  ];
  for (const image of orgImages) {
    it(`with an org, toString → parseRemote: ${image}`, () => {
      assert.deepEqual(withOrg.parseRemote(image.toString(), { tagOption: "allow" }), image);
      assert.deepEqual(withOrg.parseRemote(image.asDockerUrl(), { tagOption: "allow" }), image);
    });
  }

  const external = [
    "ubuntu",
    "ubuntu:22.04",
    "library/ubuntu:22.04",
    "docker.io/library/ubuntu:22.04",
    "ghcr.io/acme/tool:1.2",
    "localhost:5000/a/b/c:t",
    `quay.io/a/b@${DIGEST}`,
    `quay.io/a/b:1@${DIGEST}`,
    "[::1]:5000/x",
  ];
  for (const text of external) {
    it(`external: ${text}`, () => {
      const image = parser.parseRemote(text, { tagOption: "allow" });
      assert.equal(image.toString(), text);
      assert.equal(image.asDockerUrl(), text);
      assert.deepEqual(parser.parseRemote(image.toString(), { tagOption: "allow" }), image);
    });
  }

  it("local images", () => {
    for (const text of ["ubuntu:latest", "a/b:1", "localhost:5000/a:x", "reg.neu.ro/p/u:2"]) {
      assert.equal(parseLocalImage(text).toString(), text);
    }
  });
});

describe("round trips of every reference shape with a digest", () => {
  // Each shape, with a digest alone and with a tag pinned to it: printed back the same
  // way, and read back to the same fields.
  const remoteShapes: [ImageNameParser, string, string][] = [
    [parser, "image:ubuntu", "image://default/test-project/ubuntu"],
    [parser, "image:library/ubuntu", "image://default/test-project/library/ubuntu"],
    [parser, "image:/bob/ubuntu", "image://default/bob/ubuntu"],
    [parser, "image:///bob/ubuntu", "image://default/bob/ubuntu"],
    [parser, "image://another/bob/ubuntu", "image://another/bob/ubuntu"],
    [parser, "reg.neu.ro/bob/ubuntu", "image://default/bob/ubuntu"],
    [withOrg, "image:ubuntu", "image://default/test-org/test-project/ubuntu"],
    [withOrg, "image://another/other-org/bob/ubuntu", "image://another/other-org/bob/ubuntu"],
    [withOrg, "reg.neu.ro/test-org/bob/ubuntu", "image://default/test-org/bob/ubuntu"],
    [withPort, "localhost:5000/bob/ubuntu", "image://test-cluster/bob/ubuntu"],
    [parser, "ubuntu", "ubuntu"],
    [parser, "ghcr.io/acme/tool", "ghcr.io/acme/tool"],
    [parser, "localhost:5000/a/b", "localhost:5000/a/b"],
  ];
  for (const [p, text, printed] of remoteShapes) {
    for (const end of [`@${DIGEST}`, `:v1@${DIGEST}`]) {
      it(`remote ${text}${end}`, () => {
        const image = p.parseRemote(text + end);
        assert.equal(image.digest, DIGEST);
        assert.equal(image.tag, end.startsWith(":") ? "v1" : undefined, "no tag is made up");
        assert.equal(image.toString(), printed + end);
        assert.deepEqual(p.parseRemote(image.toString()), image);
        assert.deepEqual(p.parseRemote(image.asDockerUrl()), image);
        assert.ok(image.asDockerUrl().endsWith(end));
        assert.deepEqual(image.withTag(undefined).withDigest(undefined).digest, undefined);
        assert.equal(image.withDigest(undefined).toString(), printed + end.replace(/@.*/, ""));
      });
    }
  }

  const localShapes: [ImageNameParser, string][] = [
    [parser, "ubuntu"],
    [parser, "library/ubuntu"],
    [withPort, "localhost:5000/a/b"],
    [parser, "reg.neu.ro/p/u"],
  ];
  for (const [p, text] of localShapes) {
    for (const end of [`@${DIGEST}`, `:v1@${DIGEST}`]) {
      it(`local ${text}${end}`, () => {
        const image = parseLocalImage(text + end);
        assert.equal(image.toString(), text + end);
        assert.deepEqual(parseLocalImage(image.toString()), image);
        assert.equal(image.digest, DIGEST);
        // Pushed without a remote, the digest is not a target: it is dropped.
        const remote = p.localToRemote(image);
        assert.equal(remote.digest, undefined);
        assert.equal(remote.tag, end.startsWith(":") ? "v1" : undefined);
      });
    }
  }

  it("a Tag may be named by a digest (tagInfo of an image asked for by digest)", () => {
    assert.equal(new Tag(DIGEST, 3).name, DIGEST);
    rejects(() => new Tag("sha256:1", 3), "sha256:1", /invalid digest/);
  });
});

describe("local ↔ remote conversion", () => {
  it("pushes a local image to the current cluster, org and owner", () => {
    assert.deepEqual(
      parser.localToRemote(new LocalImage("ubuntu", "latest")),
      platform("ubuntu", { tag: "latest" }),
    );
    assert.deepEqual(
      withOrg.localToRemote(new LocalImage("ubuntu", "latest")),
      platform("ubuntu", { org: "test-org", tag: "latest" }),
    );
    assert.deepEqual(
      parser.localToRemote(new LocalImage("library/ubuntu")),
      platform("library/ubuntu"),
    );
  });

  it("keeps the cluster and owner of a name under a platform registry", () => {
    assert.deepEqual(
      parser.localToRemote(new LocalImage("reg.neu.ro/project/ubuntu", "v20.04")),
      platform("ubuntu", { owner: "project", tag: "v20.04" }),
    );
    assert.deepEqual(
      parser.localToRemote(new LocalImage("example.org/project/ubuntu")),
      platform("ubuntu", { cluster: "another", registry: "example.org", owner: "project" }),
    );
    assert.deepEqual(
      withOrg.localToRemote(new LocalImage("reg.neu.ro/test-org/project/ubuntu", "1")),
      platform("ubuntu", { org: "test-org", owner: "project", tag: "1" }),
    );
  });

  it("takes the current owner for a single name under a platform registry", () => {
    assert.deepEqual(
      parser.localToRemote(new LocalImage("reg.neu.ro/ubuntu", "v20.04")),
      platform("ubuntu", { tag: "v20.04" }),
    );
  });

  it("refuses a local name under a foreign registry", () => {
    rejects(
      () => parser.localToRemote(new LocalImage("ghcr.io/acme/tool", "1")),
      "ghcr.io/acme/tool:1",
      /registry host "ghcr.io" is not a platform registry/,
    );
  });

  it("pulls a remote image to its name and tag", () => {
    assert.deepEqual(
      parser.remoteToLocal(platform("ubuntu", { tag: "latest", org: "acme" })),
      new LocalImage("ubuntu", "latest"),
    );
    assert.deepEqual(
      parser.remoteToLocal(platform("library/ubuntu")),
      new LocalImage("library/ubuntu"),
    );
    assert.deepEqual(
      parser.remoteToLocal(parseExternalImage("ubuntu")),
      new LocalImage("ubuntu", "latest"),
    );
    assert.deepEqual(
      parser.remoteToLocal(parseExternalImage(`ghcr.io/a/b:1@${DIGEST}`)),
      new LocalImage("ghcr.io/a/b", "1"),
    );
  });
});
