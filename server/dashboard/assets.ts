/**
 * Where the dashboard's files come from. From source they are built in memory when the relay
 * starts; `npm run build` replaces this whole module with the prebuilt strings (the
 * `dashboard-inline` plugin in scripts/build.ts), so the bundled relay needs neither esbuild
 * nor the UI sources at run time. Keep the export's signature in step with that plugin.
 */
import { buildDashboardAssets } from './bundle.ts';
import type { DashboardAssets } from './types.ts';

export function loadDashboardAssets(): Promise<DashboardAssets> {
  return buildDashboardAssets();
}
