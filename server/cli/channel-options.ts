/** Channel fields from the admin CLI's options (`channel create` and `channel update`). */
import { ConfigError } from '../../shared/errors.ts';
import type { Obj } from '../../shared/fields.ts';

/** The channel fields set by command-line options (create and update). */
export function channelOptions(values: {
  verify?: string | undefined;
  secret?: string | undefined;
  ordered?: boolean | undefined;
  unordered?: boolean | undefined;
  'ordering-key'?: string | undefined;
  'sync-timeout-ms'?: string | undefined;
  async?: boolean | undefined;
  'retry-delays'?: string | undefined;
  'rate-limit'?: string | undefined;
  'max-body-bytes'?: string | undefined;
  methods?: string | undefined;
  paths?: string | undefined;
}): Obj {
  const body: Obj = {};
  const int = (flag: string, text: string): number => {
    if (!/^\d+$/.test(text))
      throw new ConfigError(`${flag}: expected a whole number, got "${text}"`);
    return Number(text);
  };
  if (values.verify) {
    if (!values.secret) {
      throw new ConfigError(
        "--verify needs --secret-file F (a file holding the provider's secret)",
      );
    }
    body['verify'] = { provider: values.verify, secret: values.secret };
  }
  if (values.ordered) body['ordered'] = true;
  if (values.unordered) body['ordered'] = false;
  const key = values['ordering-key'];
  if (key) {
    const [kind, ...rest] = key.split(':');
    const name = rest.join(':');
    if ((kind !== 'header' && kind !== 'json') || !name) {
      throw new ConfigError(`--ordering-key: expected header:NAME or json:PATH, got "${key}"`);
    }
    body['orderingKey'] = kind === 'header' ? { header: name } : { jsonField: name };
    body['ordered'] ??= true;
  }
  if (values['sync-timeout-ms']) {
    body['response'] = {
      mode: 'sync',
      timeoutMs: int('--sync-timeout-ms', values['sync-timeout-ms']),
    };
  }
  if (values.async) body['response'] = { mode: 'async' };
  if (values['retry-delays']) {
    body['retry'] = {
      delaysMs: values['retry-delays'].split(',').map((d) => int('--retry-delays', d.trim())),
    };
  }
  if (values['rate-limit']) {
    const [perSecond, burst] = values['rate-limit'].split('/');
    body['rateLimit'] = {
      perSecond: int('--rate-limit', perSecond ?? ''),
      ...(burst === undefined ? {} : { burst: int('--rate-limit', burst) }),
    };
  }
  if (values['max-body-bytes'])
    body['maxBodyBytes'] = int('--max-body-bytes', values['max-body-bytes']);
  const methods = values.methods;
  if (methods !== undefined) {
    // The relay validates the names; `default` goes back to the provider's own methods.
    body['methods'] =
      methods === 'default' ? null : methods.split(',').map((m) => m.trim().toUpperCase());
  }
  const paths = values.paths;
  if (paths !== undefined) {
    // `any` lifts the restriction; an empty item (",/push") is the empty suffix.
    body['paths'] = paths === 'any' ? null : paths.split(',').map((p) => p.trim());
  }
  return body;
}
