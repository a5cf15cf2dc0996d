/**
 * The admin token, kept in sessionStorage: it lives as long as the tab, is not shared with
 * other tabs, and is never sent anywhere but the Authorization header of this origin.
 */
const KEY = 'postern.adminToken';

export function loadToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the operator logs in on each load
  }
}

export function saveToken(token: string): void {
  try {
    sessionStorage.setItem(KEY, token);
  } catch {
    // storage disabled: the token stays in memory for this page only
  }
}

export function clearToken(): void {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // nothing stored
  }
}
