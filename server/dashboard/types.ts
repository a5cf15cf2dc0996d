/** The dashboard's built files, as the relay serves them. */
export interface DashboardAsset {
  /** URL path below the relay root, content-hashed: `assets/<hash>.js` (.css, .svg). */
  path: string;
  contentType: string;
  body: string;
}

export interface DashboardAssets {
  script: DashboardAsset;
  style: DashboardAsset;
  icon: DashboardAsset;
}
