// Types of @culvert/sdk (src/index.js).

export const CONTRACT_VERSION: string;
export const SDK_VERSION: string;

/** A definition the host would refuse: thrown when the module is evaluated. */
export class BuildError extends Error {}

export type ErrorKind = "transient" | "permanent";

/** A task's failure. */
export class TaskError extends Error {
  constructor(kind: ErrorKind, message: string);
  readonly kind: ErrorKind;
  static transient(message: string): TaskError;
  static permanent(message: string): TaskError;
}

/** A context operation that cannot be done (a permanent task error). */
export class ContextError extends TaskError {}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Attempt {
  executionId: string;
  number: number;
  maxAttempts: number;
}

/** A task's input, changed in place into its output. */
export class Context {
  constructor(data?: Record<string, Json>, attempt?: Attempt);
  readonly data: Record<string, Json>;
  readonly attempt: Attempt;
  get<T = Json>(key: string, fallback?: T): T;
  set(key: string, value: unknown): void;
  insert(key: string, value: unknown): void;
  update(key: string, value: unknown): void;
  remove(key: string): Json | undefined;
  keys(): string[];
  has(key: string): boolean;
}

type LogFn = (message: string, fields?: Record<string, unknown>) => void;
export const log: { trace: LogFn; debug: LogFn; info: LogFn; warn: LogFn; error: LogFn };
export const captured: Array<[string, string, Array<[string, string]>]>;

export interface RetryPolicy {
  maxAttempts: number;
  backoff: "fixed" | "linear" | "exponential";
  initialDelayMs: number;
  maxDelayMs: number;
  jitter: boolean;
  retryOn: "all" | "transient" | "never";
}
export function Retry(policy?: Partial<RetryPolicy>): Readonly<RetryPolicy>;

export interface Condition {
  kind: string;
  key: string;
  value?: Json;
}
export function succeeded(task: string): Condition;
export function failed(task: string): Condition;
export function skipped(task: string): Condition;
export function exists(key: string): Condition;
export function equals(key: string, value: Json): Condition;
export function notEquals(key: string, value: Json): Condition;
export function greaterThan(key: string, value: number): Condition;
export function lessThan(key: string, value: number): Condition;
export function contains(key: string, value: Json): Condition;

export interface Trigger {
  kind: "all" | "any" | "none" | "always";
  conditions: Condition[];
}
export function allOf(...conditions: Condition[]): Trigger;
export function anyOf(...conditions: Condition[]): Trigger;
export function noneOf(...conditions: Condition[]): Trigger;
export function always(): Trigger;

export interface ScheduleSpec {
  cron: string;
  timezone?: string;
  context?: Record<string, Json>;
  catchUp?: "skip" | "latest" | "all";
  catchUpCap?: number;
  overlap?: "allow" | "skip" | "queue-one";
}
export function Schedule(spec: ScheduleSpec): Readonly<Required<ScheduleSpec>>;

export interface TaskSpec {
  id: string;
  dependencies?: string[];
  retry?: Readonly<RetryPolicy>;
  timeoutMs?: number;
  trigger?: Trigger;
  description?: string;
}
export interface TaskDef extends Required<Omit<TaskSpec, "timeoutMs" | "trigger">> {
  timeoutMs?: number;
  trigger?: Trigger;
  run: (ctx: Context) => void;
}
export function task(spec: TaskSpec, run: (ctx: Context) => void): TaskDef;

export interface WorkflowDef {
  name: string;
  description: string;
  tasks: TaskDef[];
  schedules: ReturnType<typeof Schedule>[];
}
export function workflow(
  spec: { name: string; description?: string; schedules?: ReturnType<typeof Schedule>[] },
  tasks: TaskDef[],
): WorkflowDef;

export interface CapabilityRequest {
  env?: string[];
  dirs?: Array<string | { path: string; writable?: boolean }>;
  httpHosts?: string[];
  wallClock?: boolean;
  random?: boolean;
}
export function capabilities(request?: CapabilityRequest): unknown;

export const registry: { workflows: WorkflowDef[]; capabilities: unknown };
export const facts: { name: string; version: string; description: string; author: string };

/** Run one task natively, as the component's `task.run` does. */
export function runTask(workflow: string, task: string, contextJson: string, attempt?: Attempt): string;
