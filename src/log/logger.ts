// The one logger: structured records to stderr, as logfmt ("text") or JSON.
// Records are buffered and written in batches, at most FLUSH_MS after the
// first one, so the access log costs no syscall per connection; flush() on
// exit.

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";

export type Fields = Record<string, string | number | boolean | null | undefined | readonly string[]>;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const FLUSH_MS = 50;
/** Write at once when this much is waiting, whatever the time. */
const FLUSH_BYTES = 64 * 1024;

export interface LogSink {
  write(text: string): void;
  flush(): void;
}

/** stderr; the logger hands it whole batches, so each write is one syscall. */
function stderrSink(): LogSink {
  const w = Bun.stderr.writer();
  return {
    write: (t) => void w.write(t),
    flush: () => void w.flush(),
  };
}

export class Logger {
  private min: number;
  /** Lines not yet handed to the sink (a rope; joined once per batch). */
  private batch = "";
  private timer: ReturnType<typeof setTimeout> | null = null;

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
    this.batch += this.format === "json" ? jsonLine(time, "info", msg, fields) : logfmtLine(time, "info", msg, fields);
    this.flush();
  }

  log(level: LogLevel, msg: string, fields?: Fields): void {
    if (LEVELS[level] < this.min) return;
    const time = this.time();
    this.append(level, this.format === "json" ? jsonLine(time, level, msg, fields) : logfmtLine(time, level, msg, fields));
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
      this.format === "json" ? `{"time":"${time}","level":"${level}","msg":${JSON.stringify(msg)}${formattedFields}}\n` : `time=${time} level=${level} msg=${quote(msg)}${formattedFields}\n`,
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

  private append(level: LogLevel, line: string): void {
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
    this.flush();
    this.sink.write(text);
    this.sink.flush();
  }

  /** Write everything logged so far. */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.batch === "") return;
    const text = this.batch;
    this.batch = "";
    this.sink.write(text);
    this.sink.flush();
  }
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
