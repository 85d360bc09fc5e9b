// The component's exports for componentize-js: `metadata` and `task` of
// the contract culvert:plugin@0.2.0, over what the package declared. The
// entry module `culvert package build` writes re-exports these.
import { log as hostLog } from "culvert:plugin/host@0.2.0";
import { CONTRACT_VERSION, SDK_VERSION, TaskError, facts, registry, runTask, setLogSink } from "./index.js";

setLogSink((level, message, fields) => hostLog(level, message, fields));

const RETRY_ON = { all: "all-errors", transient: "transient-only", never: "never" };

function condition(c) {
  if (c.kind.startsWith("task-") || c.kind === "context-exists") return { tag: c.kind, val: c.key };
  return { tag: c.kind, val: { key: c.key, valueJson: JSON.stringify(c.value ?? null) } };
}

function trigger(r) {
  if (!r) return undefined;
  if (r.kind === "always") return { tag: "always" };
  return { tag: r.kind, val: r.conditions.map(condition) };
}

export const metadata = {
  describe() {
    const caps = registry.capabilities;
    return {
      name: facts.name,
      version: facts.version,
      description: facts.description,
      author: facts.author,
      contractVersion: CONTRACT_VERSION,
      sdkVersion: SDK_VERSION,
      workflows: registry.workflows.map((w) => ({
        name: w.name,
        description: w.description,
        tasks: w.tasks.map((t) => ({
          id: t.id,
          description: t.description,
          dependencies: t.dependencies,
          retry: {
            maxAttempts: t.retry.maxAttempts,
            backoff: t.retry.backoff,
            initialDelayMs: BigInt(t.retry.initialDelayMs),
            maxDelayMs: BigInt(t.retry.maxDelayMs),
            jitter: t.retry.jitter,
            retryOn: RETRY_ON[t.retry.retryOn],
          },
          timeoutMs: t.timeoutMs === undefined ? undefined : BigInt(t.timeoutMs),
          trigger: trigger(t.trigger),
        })),
      })),
      capabilities: caps,
      schedules: registry.workflows.flatMap((w) =>
        w.schedules.map((s) => ({
          workflow: w.name,
          cron: s.cron,
          timezone: s.timezone,
          contextJson: JSON.stringify(s.context),
          catchUp: s.catchUp,
          catchUpCap: s.catchUpCap,
          overlap: s.overlap,
        })),
      ),
    };
  },
};

export const task = {
  run(workflow, taskId, contextJson, attempt) {
    try {
      return runTask(workflow, taskId, contextJson, {
        executionId: attempt.executionId,
        number: attempt.attempt,
        maxAttempts: attempt.maxAttempts,
      });
    } catch (e) {
      const error = e instanceof TaskError ? e : TaskError.permanent(String(e));
      const thrown = new Error(error.message);
      thrown.payload = { kind: error.kind, message: error.message };
      throw thrown;
    }
  },
};
