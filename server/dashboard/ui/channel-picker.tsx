/** Checkboxes of the relay's channels: which ones an agent may deliver. */
import { useSession } from './session.ts';

export function ChannelPicker(props: {
  legend: string;
  chosen: ReadonlySet<string>;
  onChange: (chosen: ReadonlySet<string>) => void;
  /** Shown in place of the list when there is no channel. */
  whenNone?: string;
}) {
  const { channels } = useSession();
  const { chosen } = props;
  const toggle = (id: string, on: boolean) => {
    const next = new Set(chosen);
    if (on) next.add(id);
    else next.delete(id);
    props.onChange(next);
  };
  const list = channels ?? [];
  return (
    <fieldset>
      <legend>{props.legend}</legend>
      {props.whenNone !== undefined && list.length === 0 && <p class="muted">{props.whenNone}</p>}
      {list.map((c) => (
        <label key={c.id} class="check">
          <input
            type="checkbox"
            checked={chosen.has(c.id)}
            onChange={(e) => toggle(c.id, e.currentTarget.checked)}
          />{' '}
          {c.name}
        </label>
      ))}
    </fieldset>
  );
}
