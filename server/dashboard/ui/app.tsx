/** The page: the login form until a token is accepted, then the dashboard. */
import { useCallback, useState } from 'preact/hooks';
import { Dashboard } from './dashboard.tsx';
import { Login } from './login.tsx';
import { clearToken, loadToken, saveToken } from './token-store.ts';

export function App() {
  const [token, setToken] = useState<string | null>(loadToken);
  const [notice, setNotice] = useState<string | null>(null);

  const logIn = useCallback((t: string) => {
    saveToken(t);
    setNotice(null);
    setToken(t);
  }, []);
  const logOut = useCallback((why?: string) => {
    clearToken();
    setNotice(why ?? 'You are logged out.');
    setToken(null);
  }, []);

  if (token === null) return <Login notice={notice} onLogin={logIn} />;
  return <Dashboard key={token} token={token} onLogout={logOut} />;
}
