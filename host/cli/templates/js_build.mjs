// Written by `culvert package build` into the project's node_modules (so
// that its imports resolve to the project's own installs) and run with
// node: imports the package natively (a definition the host would refuse
// stops the build here, with its message), bundles it with the SDK's
// exports (esbuild), and builds the component (componentize-js) against
// the host's contract, without the wasi:http imports.
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [projectDir, witPath, bundlePath, out] = process.argv.slice(2);
const pkg = JSON.parse(await readFile(join(projectDir, "package.json"), "utf8"));
const main = resolve(projectDir, pkg.main ?? "index.js");
const author = typeof pkg.author === "string" ? pkg.author : (pkg.author?.name ?? "");
const facts = {
  name: pkg.name ?? "",
  version: pkg.version ?? "0.1.0",
  description: pkg.description ?? "",
  author,
};

// What the package prints while it is evaluated goes to stderr: stdout is
// the summary's.
const log = console.log;
console.log = (...args) => console.error(...args);
try {
  await import(pathToFileURL(main).href);
} catch (e) {
  if (e?.name === "BuildError") {
    console.error(`${main}: ${e.message}`);
    process.exit(2);
  }
  throw e;
}
const sdk = await import("@culvert/sdk");
if (sdk.registry.workflows.length === 0) {
  console.error(`${main} declares no workflow: call workflow({ name }, [task(...)])`);
  process.exit(2);
}

const { build } = await import("esbuild");
const entry = [
  `import { facts } from "@culvert/sdk";`,
  `Object.assign(facts, ${JSON.stringify(facts)});`,
  `import ${JSON.stringify(main)};`,
  `export { metadata, task } from "@culvert/sdk/component";`,
].join("\n");
await build({
  stdin: { contents: entry, resolveDir: projectDir, sourcefile: "culvert-entry.js" },
  bundle: true,
  format: "esm",
  platform: "neutral",
  mainFields: ["module", "main"],
  external: ["culvert:*"],
  outfile: bundlePath,
  logLevel: "error",
});

const { componentize } = await import("@bytecodealliance/componentize-js");
const { component } = await componentize({
  sourcePath: bundlePath,
  witPath,
  worldName: "plugin",
  // No wasi:http: outbound HTTP is the host's, under grants.
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
console.log = log;
console.log(JSON.stringify({ ...facts, workflows: sdk.registry.workflows.map((w) => w.name) }));
