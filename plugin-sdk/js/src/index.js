// @culvert/sdk: write Culvert workflow packages in JavaScript.
//
// A package declares workflows of tasks with `workflow` and `task`; the
// component's exports (`./component.js`) describe and run them against the
// contract `culvert:plugin@0.2.0`, the same as the Rust and Python SDKs.
// Every rule the host enforces at load time is checked when the module is
// evaluated (so when the package is built): a `BuildError`.

/** The version of the WIT contract (culvert:plugin) this SDK builds against. */
export const CONTRACT_VERSION = "0.2.0";
/** This SDK's version. */
export const SDK_VERSION = "js-0.1.0";

const ID = /^[A-Za-z0-9_-]{1,128}$/;
const DAY_MS = 86_400_000;

/** A definition the host would refuse. */
export class BuildError extends Error {
  constructor(message) {
    super(message);
    this.name = "BuildError";
  }
}

/** A task's failure: transient (worth another attempt) or permanent. */
export class TaskError extends Error {
  constructor(kind, message) {
    if (kind !== "transient" && kind !== "permanent") {
      throw new TypeError(`a TaskError is transient or permanent, not ${kind}`);
    }
    super(message);
    this.name = "TaskError";
    this.kind = kind;
  }
  /** A failure a later attempt may not meet. */
  static transient(message) {
    return new TaskError("transient", message);
  }
  /** A failure another attempt would meet again. */
  static permanent(message) {
    return new TaskError("permanent", message);
  }
}

/** A context operation that cannot be done: a permanent task error. */
export class ContextError extends TaskError {
  constructor(message) {
    super("permanent", message);
    this.name = "ContextError";
  }
}

function checkJson(key, value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new ContextError(`the value for '${key}' is not JSON: ${e.message}`);
  }
  if (text === undefined) {
    throw new ContextError(`the value for '${key}' is not JSON`);
  }
  return JSON.parse(text);
}

/** A task's input, changed in place into its output (a JSON object). */
export class Context {
  constructor(data = {}, attempt = { executionId: "", number: 1, maxAttempts: 1 }) {
    this.data = { ...data };
    this.attempt = attempt;
  }
  /** The value at `key`; `fallback` when absent, else a ContextError. */
  get(key, ...fallback) {
    if (Object.hasOwn(this.data, key)) return this.data[key];
    if (fallback.length) return fallback[0];
    throw new ContextError(`the context has no key '${key}'`);
  }
  /** Write `key`, whether or not it exists. */
  set(key, value) {
    this.data[key] = checkJson(key, value);
  }
  /** Write a new `key`; a ContextError when it exists. */
  insert(key, value) {
    if (Object.hasOwn(this.data, key)) {
      throw new ContextError(`the context has '${key}' already (use update or set)`);
    }
    this.data[key] = checkJson(key, value);
  }
  /** Change an existing `key`; a ContextError when absent. */
  update(key, value) {
    if (!Object.hasOwn(this.data, key)) {
      throw new ContextError(`the context has no key '${key}' to update (use insert or set)`);
    }
    this.data[key] = checkJson(key, value);
  }
  /** Remove `key`: its value, or undefined. */
  remove(key) {
    const v = this.data[key];
    delete this.data[key];
    return v;
  }
  /** The keys, in order. */
  keys() {
    return Object.keys(this.data);
  }
  has(key) {
    return Object.hasOwn(this.data, key);
  }
}

const LEVELS = ["trace", "debug", "info", "warn", "error"];
let sink = null;

/** Records logged outside a component (native tests): [level, message, fields]. */
export const captured = [];

/** @internal Set by the component: the host's log import. */
export function setLogSink(f) {
  sink = f;
}

function emit(level, message, fields = {}) {
  const pairs = Object.entries(fields).map(([k, v]) => [String(k), String(v)]);
  if (sink) sink(level, String(message), pairs);
  else captured.push([level, String(message), pairs]);
}

/** Logging to the host's `log` import: stored with the attempt. */
export const log = Object.fromEntries(LEVELS.map((l) => [l, (message, fields) => emit(l, message, fields)]));

/** A retry policy; the defaults are the Rust SDK's `retry(...)`. */
export function Retry({
  maxAttempts = 3,
  backoff = "exponential",
  initialDelayMs = 1000,
  maxDelayMs = 60_000,
  jitter = true,
  retryOn = "transient",
} = {}) {
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 100) {
    throw new BuildError("invalid retry policy: maxAttempts must be between 1 and 100");
  }
  if (!["fixed", "linear", "exponential"].includes(backoff)) {
    throw new BuildError(`invalid retry policy: unknown backoff '${backoff}', expected "fixed", "linear" or "exponential"`);
  }
  for (const [name, v] of [["initialDelayMs", initialDelayMs], ["maxDelayMs", maxDelayMs]]) {
    if (!Number.isInteger(v) || v < 0) throw new BuildError(`invalid retry policy: ${name} must be a non-negative integer`);
  }
  if (maxDelayMs > DAY_MS) throw new BuildError("invalid retry policy: maxDelayMs is over 86400000 (24 hours)");
  if (initialDelayMs > maxDelayMs) {
    throw new BuildError(`invalid retry policy: initialDelayMs (${initialDelayMs}) is above maxDelayMs (${maxDelayMs})`);
  }
  if (!["all", "transient", "never"].includes(retryOn)) {
    throw new BuildError(`invalid retry policy: unknown retryOn '${retryOn}', expected "all", "transient" or "never"`);
  }
  return Object.freeze({ maxAttempts, backoff, initialDelayMs, maxDelayMs, jitter: Boolean(jitter), retryOn });
}

const NO_RETRY = Retry({ maxAttempts: 1 });

const cond = (kind) => (key, value) => Object.freeze({ kind, key, value });
/** The named dependency completed. */
export const succeeded = cond("task-succeeded");
/** The named dependency failed for good. */
export const failed = cond("task-failed");
/** The named dependency was skipped. */
export const skipped = cond("task-skipped");
/** The context holds `key`. */
export const exists = cond("context-exists");
/** The context value at `key` equals `value`. */
export const equals = cond("context-equals");
/** The context value at `key` is absent or differs from `value`. */
export const notEquals = cond("context-not-equals");
/** Both numbers, the context value greater. */
export const greaterThan = cond("context-greater-than");
/** Both numbers, the context value smaller. */
export const lessThan = cond("context-less-than");
/** A string containing, or an array holding, `value`. */
export const contains = cond("context-contains");

const rule = (kind) => (...conditions) => {
  if (conditions.length === 0) throw new BuildError(`a trigger rule ${kind}Of(...) needs at least one condition`);
  return Object.freeze({ kind, conditions });
};
/** Run when every condition holds. */
export const allOf = rule("all");
/** Run when at least one condition holds. */
export const anyOf = rule("any");
/** Run when no condition holds. */
export const noneOf = rule("none");
/** Run whatever happened to the dependencies. */
export const always = () => Object.freeze({ kind: "always", conditions: [] });

/** A schedule declared with the workflow (checked by the host at add). */
export function Schedule({ cron, timezone = "UTC", context = {}, catchUp = "skip", catchUpCap = 10, overlap: overlapGiven = "allow" }) {
  let overlap = overlapGiven;
  if (typeof cron !== "string" || !cron.trim()) throw new BuildError("a schedule needs a cron expression");
  if (!["skip", "latest", "all"].includes(catchUp)) throw new BuildError(`unknown catchUp '${catchUp}': expected skip, latest or all`);
  if (overlap === "queue_one") overlap = "queue-one";
  if (!["allow", "skip", "queue-one"].includes(overlap)) throw new BuildError(`unknown overlap '${overlap}': expected allow, skip or queue-one`);
  if (context === null || typeof context !== "object" || Array.isArray(context)) throw new BuildError("a schedule's context is a plain object (a JSON object)");
  if (!Number.isInteger(catchUpCap) || catchUpCap < 1 || catchUpCap > 100) throw new BuildError("catchUpCap must be 1 to 100");
  return Object.freeze({ cron, timezone, context: checkJson("context", context), catchUp, catchUpCap, overlap });
}

/** What the package declares, filled in as its modules are evaluated. */
export const registry = {
  workflows: [],
  capabilities: { env: [], dirs: [], httpHosts: [], wallClock: false, random: false },
};

/** Name, version, description and author: set by `culvert package build` from package.json. */
export const facts = { name: "", version: "", description: "", author: "" };

/** Declare what the package asks for; an operator must grant it too. */
export function capabilities({ env = [], dirs = [], httpHosts = [], wallClock = false, random = false } = {}) {
  for (const [name, value] of [["env", env], ["dirs", dirs], ["httpHosts", httpHosts]]) {
    if (!Array.isArray(value)) throw new BuildError(`capabilities: ${name} is an array, not ${JSON.stringify(value)}`);
  }
  const pairs = dirs.map((d) => (typeof d === "string" ? { guestPath: d, writable: false } : { guestPath: d.path, writable: Boolean(d.writable) }));
  for (const d of pairs) {
    if (!String(d.guestPath).startsWith("/")) throw new BuildError(`a directory capability is an absolute guest path, not '${d.guestPath}'`);
  }
  registry.capabilities = { env: [...env], dirs: pairs, httpHosts: [...httpHosts], wallClock: Boolean(wallClock), random: Boolean(random) };
  return registry.capabilities;
}

/** A task: `run(ctx)` with its id, dependencies, retry, timeoutMs and trigger. */
export function task({ id, dependencies = [], retry, timeoutMs, trigger, description = "" }, run) {
  if (typeof id !== "string" || !ID.test(id)) throw new BuildError(`invalid task id '${id}': use 1 to 128 of [A-Za-z0-9_-]`);
  if (!Array.isArray(dependencies)) throw new BuildError(`task '${id}': dependencies must be an array of task ids`);
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > DAY_MS)) {
    throw new BuildError(`task '${id}': timeoutMs must be between 1 and 86400000 (24 hours)`);
  }
  if (typeof run !== "function") throw new BuildError(`task '${id}': give the function that runs it`);
  if (run.constructor?.name === "AsyncFunction") throw new BuildError(`task '${id}': tasks are synchronous functions, not async`);
  return Object.freeze({ id, dependencies: [...dependencies], retry: retry ?? NO_RETRY, timeoutMs, trigger, description, run });
}

/** A workflow of `tasks` (in order), checked as the host would. */
export function workflow({ name, description = "", schedules = [] }, tasks) {
  if (typeof name !== "string" || !ID.test(name)) throw new BuildError(`invalid workflow name '${name}': use 1 to 128 of [A-Za-z0-9_-]`);
  if (!Array.isArray(tasks) || tasks.length === 0) throw new BuildError(`workflow '${name}' has no tasks`);
  const ids = new Set();
  for (const t of tasks) {
    if (ids.has(t.id)) throw new BuildError(`workflow '${name}': duplicate task id '${t.id}'`);
    ids.add(t.id);
  }
  for (const t of tasks) {
    for (const d of t.dependencies) {
      if (d === t.id) throw new BuildError(`workflow '${name}': task '${t.id}' depends on itself`);
      if (!ids.has(d)) throw new BuildError(`workflow '${name}': task '${t.id}' depends on unknown task '${d}' (known: ${[...ids].sort().join(", ")})`);
    }
    for (const c of t.trigger?.conditions ?? []) {
      if (c.kind.startsWith("task-") && !t.dependencies.includes(c.key)) {
        throw new BuildError(`workflow '${name}': the trigger rule of task '${t.id}' names '${c.key}', which is not one of its dependencies`);
      }
    }
  }
  const deps = new Map(tasks.map((t) => [t.id, t.dependencies]));
  const state = new Map();
  const visit = (node, path) => {
    if (state.get(node) === 2) return;
    if (state.get(node) === 1) {
      throw new BuildError(`workflow '${name}': dependency cycle ${[...path.slice(path.indexOf(node)), node].join(" -> ")}`);
    }
    state.set(node, 1);
    for (const d of deps.get(node)) visit(d, [...path, node]);
    state.set(node, 2);
  };
  for (const t of tasks) visit(t.id, []);
  if (registry.workflows.some((w) => w.name === name)) throw new BuildError(`duplicate workflow name '${name}'`);
  const wf = Object.freeze({ name, description, tasks, schedules });
  registry.workflows.push(wf);
  return wf;
}

/** Run one task natively: parse, call, serialize (what the component's `task.run` does). */
export function runTask(workflowName, taskId, contextJson, attempt) {
  const wf = registry.workflows.find((w) => w.name === workflowName);
  if (!wf) throw TaskError.permanent(`this package has no workflow '${workflowName}'`);
  const t = wf.tasks.find((x) => x.id === taskId);
  if (!t) throw TaskError.permanent(`workflow '${workflowName}' has no task '${taskId}'`);
  let data;
  try {
    data = JSON.parse(contextJson);
  } catch (e) {
    throw TaskError.permanent(`the context is not a JSON object: ${e.message}`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw TaskError.permanent("the context is not a JSON object");
  const ctx = new Context(data, attempt);
  try {
    const result = t.run(ctx);
    if (result && typeof result.then === "function") {
      throw TaskError.permanent(`task '${taskId}' returned a promise: tasks are synchronous`);
    }
  } catch (e) {
    if (e instanceof TaskError) throw e;
    throw TaskError.permanent(`${e?.name ?? "Error"}: ${e?.message ?? e}`);
  }
  return JSON.stringify(ctx.data);
}
