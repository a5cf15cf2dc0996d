/** Headers exactly as received: names and values, in order, repeats kept. */
export function HeadersTable(props: {
  headers: [string, string][];
  title?: string;
  /** The heading's id (unique on the page). */
  id?: string;
}) {
  const id = props.id ?? 'headers-heading';
  return (
    <section aria-labelledby={id}>
      <h3 id={id}>
        {props.title ?? 'Headers'} ({props.headers.length})
      </h3>
      <table class="headers">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Value</th>
          </tr>
        </thead>
        <tbody>
          {props.headers.map(([name, value], i) => (
            <tr key={i}>
              <th scope="row">{name}</th>
              <td>{value}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
