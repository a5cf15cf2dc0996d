/** The login form: the admin token is checked against the relay before it is kept. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { Api, ApiError } from './api.ts';
import { errorText } from './format.ts';

export function Login(props: { notice: string | null; onLogin: (token: string) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    input.current?.focus();
  }, [error]);

  const submit = async (e: Event) => {
    e.preventDefault();
    const candidate = token.trim();
    if (candidate === '') {
      setError('Enter the admin token.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await new Api(candidate).channels();
    } catch (err) {
      setBusy(false);
      setError(
        err instanceof ApiError && err.status === 401
          ? 'Wrong admin token: the relay refused it. The token is in <data-dir>/admin-token ' +
              '(written on first start) or in POSTERN_ADMIN_TOKEN.'
          : `Could not log in: ${errorText(err)}`,
      );
      return;
    }
    props.onLogin(candidate);
  };

  return (
    <main class="login">
      <h1>Postern</h1>
      <p class="muted">Webhook gateway dashboard</p>
      {props.notice && (
        <p class="notice" role="status">
          {props.notice}
        </p>
      )}
      <form onSubmit={submit} class="stack">
        <label for="admin-token">Admin token</label>
        <input
          id="admin-token"
          ref={input}
          type="password"
          autocomplete="current-password"
          spellcheck={false}
          value={token}
          aria-invalid={error !== null}
          aria-describedby={error ? 'login-error' : undefined}
          onInput={(e) => setToken(e.currentTarget.value)}
        />
        {error && (
          <p id="login-error" class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Checking…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
