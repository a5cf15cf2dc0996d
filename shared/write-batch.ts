/**
 * Coalesces the writes made to a socket during one turn of the event loop into one syscall:
 * the first write of a turn corks the socket and a `setImmediate` uncorks it. A burst of
 * tunnel frames (deliveries, acks) then leaves in one `writev` instead of one each.
 */
export interface Corkable {
  cork(): void;
  uncork(): void;
  readonly destroyed: boolean;
}

export function writeBatcher(socket: Corkable): () => void {
  let corked = false;
  const release = () => {
    corked = false;
    if (!socket.destroyed) socket.uncork();
  };
  return () => {
    if (corked || socket.destroyed) return;
    corked = true;
    socket.cork();
    setImmediate(release);
  };
}
