// The one logger: structured records to stderr, as logfmt ("text") or JSON.
// Records are buffered and written in batches, at most FLUSH_MS after the
// first one, so the access log costs no syscall per connection; flush() on
// exit. What waits unwritten is bounded (docs/METRICS_AND_LOGS.md "Logs"):
// when stderr's reader stalls, records past the bound are dropped and
// counted — info and debug first — and one `log lines dropped` record says
// how many once the sink has written what it held. Nothing here blocks.

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";

export type Fields = Record<string, string | number | boolean | null | undefined | readonly string[]>;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const FLUSH_MS = 50;
/** Write at once when this much is waiting, whatever the time. */
const FLUSH_BYTES = 64 * 1024;
/** Past this much text waiting (the batch and what the sink holds unwritten), info and debug records are dropped… */
export const SHED_INFO_CHARS = 4 * 1024 * 1024;
/** …and past this much, every record. */
export const SHED_ALL_CHARS = 8 * 1024 * 1024;

export interface LogSink {
  write(text: string): void;
  /**
   * Write out what it was given. A Promise while some of it still waits for
   * the reader (backpressure), settled once it has all been written; any
   * other answer means written.
   */
  flush(): unknown;
}

/**
 * stderr; the logger hands it whole batches, so each write is one syscall.
 * Bun's FileSink buffers what a pipe does not take and answers write() and
 * flush() with a Promise, settled when its buffer is written out (measured,
 * Bun 1.4.4; docs/METRICS_AND_LOGS.md "Logs").
 */
function stderrSink(): LogSink {
  const w = Bun.stderr.writer();
  let pending: Promise<unknown> | undefined;
  return {
    write: (t) => {
      const r = w.write(t);
      if (r instanceof Promise) pending = r.catch(() => {});
    },
    flush: () => {
      const r = w.flush();
      const p = r instanceof Promise ? r.catch(() => {}) : pending;
      pending = undefined;
      return p;
    },
  };
}

/** Records dropped by this thread's loggers since start (mc_proxy_log_dropped_total). */
let droppedTotal = 0;

/** Log records dropped since the process started, the bound reached (the main thread's count: workers' lines are written by it). */
export function logRecordsDropped(): number {
  return droppedTotal;
}

export class Logger {
  private min: number;
  /** Lines not yet handed to the sink (a rope; joined once per batch). */
  private batch = "";
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Text handed to the sink that it has not yet written (its flush Promises not all settled). */
  private unwritten = 0;
  /** The sink's flush Promises not yet settled. */
  private inflight = 0;
  /** Records dropped since the last `log lines dropped` record. */
  private dropped = 0;

  constructor(
    level: LogLevel,
    private readonly format: LogFormat,
    private readonly sink: LogSink = stderrSink(),
  ) {
    this.min = LEVELS[level];
  }

  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= this.min;
  }

  debug(msg: string, fields?: Fields): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.log("error", msg, fields);
  }

  /**
   * An audit record (a mutating admin call): written at info whatever the
   * configured level, and at once — `level = "warn"` must not hide who
   * changed a route.
   */
  audit(msg: string, fields: Fields): void {
    const time = this.time();
    const line = this.format === "json" ? jsonLine(time, "info", msg, fields) : logfmtLine(time, "info", msg, fields);
    if (this.admit(LEVELS.warn, line.length)) this.batch += line;
    this.flush();
  }

  log(level: LogLevel, msg: string, fields?: Fields): void {
    if (LEVELS[level] < this.min) return;
    const time = this.time();
    this.append(
      level,
      this.format === "json" ? jsonLine(time, level, msg, fields) : logfmtLine(time, level, msg, fields),
    );
  }

  /** True when records are JSON (for callers that format their own fields, see emit). */
  get json(): boolean {
    return this.format === "json";
  }

  /**
   * A record whose fields the caller has already formatted in this logger's
   * format: ` key=value ...` for text, `,"key":value...` for JSON. For the
   * access log, written once per connection, this skips building a fields
   * object and walking it.
   */
  emit(level: LogLevel, msg: string, formattedFields: string): void {
    if (LEVELS[level] < this.min) return;
    const time = this.time();
    this.append(
      level,
      this.format === "json"
        ? `{"time":"${time}","level":"${level}","msg":${JSON.stringify(msg)}${formattedFields}}\n`
        : `time=${time} level=${level} msg=${quote(msg)}${formattedFields}\n`,
    );
  }

  private lastMs = 0;
  private lastIso = "";

  /** ISO 8601 time, formatted once per millisecond. */
  private time(): string {
    const ms = Date.now();
    if (ms !== this.lastMs) {
      this.lastMs = ms;
      this.lastIso = new Date(ms).toISOString();
    }
    return this.lastIso;
  }

  /** Whether a record of `level` and `chars` fits under the bound; else it is counted as dropped. */
  private admit(level: number, chars: number): boolean {
    const waiting = this.batch.length + this.unwritten + chars;
    if (waiting <= SHED_INFO_CHARS || (level >= LEVELS.warn && waiting <= SHED_ALL_CHARS)) return true;
    this.dropped++;
    droppedTotal++;
    // Said once the sink has written what it holds (settled), or at the next flush if it holds nothing.
    if (this.inflight === 0 && this.timer === null) this.timer = setTimeout(this.flushSoon, FLUSH_MS);
    return false;
  }

  private append(level: LogLevel, line: string): void {
    if (!this.admit(LEVELS[level], line.length)) return;
    this.batch += line;
    // Warnings and errors are rare and wanted at once; access records can wait a little.
    if (this.batch.length >= FLUSH_BYTES || LEVELS[level] >= LEVELS.warn) this.flush();
    else if (this.timer === null) this.timer = setTimeout(this.flushSoon, FLUSH_MS);
  }

  private readonly flushSoon = (): void => {
    this.timer = null;
    this.flush();
  };

  /**
   * Lines another thread's logger formatted (a worker's batch): written
   * whole, in one write, after what this logger had waiting.
   */
  forward(text: string): void {
    if (this.batch.length + this.unwritten + text.length <= SHED_INFO_CHARS) this.batch += text;
    else {
      // Over the bound: each line on its own, by its level (warnings and errors kept longer).
      for (const line of text.split(/(?<=\n)/)) if (this.admit(levelOf(line), line.length)) this.batch += line;
    }
    this.flush();
  }

  /** Write everything logged so far. */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.batch === "" && (this.dropped === 0 || this.inflight > 0)) return;
    if (this.dropped > 0 && this.inflight === 0) this.batch += this.droppedRecord();
    const text = this.batch;
    this.batch = "";
    this.sink.write(text);
    const p = this.sink.flush();
    const pending = p instanceof Promise;
    if (!pending && this.inflight === 0) return;
    // Written only when every earlier flush has been (a sink writes in order).
    this.unwritten += text.length;
    if (!pending) return;
    this.inflight++;
    void p.then(this.settled, this.settled);
  }

  /** A flush Promise settled: once none is left, the sink holds nothing unwritten. */
  private readonly settled = (): void => {
    this.inflight--;
    if (this.inflight > 0) return;
    this.unwritten = 0;
    if (this.dropped > 0 || this.batch !== "") this.flush();
  };

  /** The one record that says how many were dropped (not itself subject to the bound). */
  private droppedRecord(): string {
    const fields = { dropped: this.dropped, bound_bytes: SHED_INFO_CHARS, reason: "stderr was not read fast enough" };
    this.dropped = 0;
    const time = this.time();
    return this.format === "json"
      ? jsonLine(time, "warn", "log lines dropped", fields)
      : logfmtLine(time, "warn", "log lines dropped", fields);
  }
}

/** The level of a formatted line (`level=…` in logfmt, `"level":"…"` in JSON, within its first 64 characters); info if none. */
function levelOf(line: string): number {
  const head = line.slice(0, 64);
  const m = /(?:^|\s)level=(\w+)|"level":"(\w+)"/.exec(head);
  return LEVELS[(m?.[1] ?? m?.[2] ?? "info") as LogLevel] ?? LEVELS.info;
}

function jsonLine(time: string, level: string, msg: string, fields?: Fields): string {
  const o: Record<string, unknown> = { time, level, msg };
  if (fields !== undefined) {
    for (const k in fields) {
      const v = fields[k];
      if (v !== undefined) o[k] = v;
    }
  }
  return `${JSON.stringify(o)}\n`;
}

function logfmtLine(time: string, level: string, msg: string, fields?: Fields): string {
  let s = `time=${time} level=${level} msg=${quote(msg)}`;
  if (fields !== undefined) {
    for (const k in fields) {
      const v = fields[k];
      if (v === undefined) continue;
      s += ` ${k}=${v === null ? "" : typeof v === "string" ? quote(v) : Array.isArray(v) ? quote(v.join(",")) : String(v)}`;
    }
  }
  return `${s}\n`;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what must be quoted
const NEEDS_QUOTE = /[\s"=\\\x00-\x1f\x7f]/;

export function quote(v: string): string {
  if (v !== "" && !NEEDS_QUOTE.test(v)) return v;
  return JSON.stringify(v);
}
