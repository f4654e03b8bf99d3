// Connection ids: a random prefix per process and a counter, so an id is
// unique across restarts in practice. The access log's `id`, and the
// PP2_TYPE_UNIQUE_ID sent to a backend. The counter is taken per connection;
// the text is made only when something asks for it.

const ID_PREFIX = Math.floor(Math.random() * 0x100000000)
  .toString(16)
  .padStart(8, "0");
let counter = 0;

export function nextSeq(): number {
  return ++counter;
}

export function connectionId(seq: number): string {
  return `${ID_PREFIX}-${seq.toString(36)}`;
}
