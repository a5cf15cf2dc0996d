/** An event status or attempt outcome as a coloured word (the word itself carries the meaning). */
export function StatusBadge(props: { status: string }) {
  return <span class={`badge badge-${props.status.replace(/[^a-z_-]/g, '')}`}>{props.status}</span>;
}
