/** The request headers exactly as received: names and values, in order, repeats kept. */
export function HeadersTable(props: { headers: [string, string][] }) {
  return (
    <section aria-labelledby="headers-heading">
      <h3 id="headers-heading">Headers ({props.headers.length})</h3>
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
