/**
 * The charts' geometry, as pure functions: scales, axis ticks and SVG path data. The view
 * (charts.tsx) draws elements from them; nothing here touches the DOM.
 */

/** The plot area inside the SVG's viewBox. */
export interface Frame {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** The smallest 1, 2 or 5 × 10^k at or above `v` (at least 1). */
export function niceMax(v: number): number {
  if (!(v > 1)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Where a linear value in [0, max] goes, from the bottom of the frame to its top. */
export function yLinear(frame: Frame, max: number, v: number): number {
  return frame.top + frame.height * (1 - Math.min(v, max) / max);
}

/** Log scale from 1 to `max` (values below 1 sit on the bottom). */
export function yLog(frame: Frame, max: number, v: number): number {
  const span = Math.log10(Math.max(max, 10));
  const at = Math.log10(Math.max(1, Math.min(v, max))) / span;
  return frame.top + frame.height * (1 - at);
}

/** The x of point `i` of `n`, each point at the middle of its slot. */
export function xAt(frame: Frame, n: number, i: number): number {
  return frame.left + (frame.width * (i + 0.5)) / Math.max(1, n);
}

/**
 * SVG path data through the points; a null breaks the line (a point without a value). Numbers
 * rounded to 0.1 to keep the markup short.
 */
export function linePath(ys: readonly (number | null)[], x: (i: number) => number): string {
  const r = (n: number) => Math.round(n * 10) / 10;
  let d = '';
  let pen = false;
  ys.forEach((y, i) => {
    if (y === null) {
      pen = false;
      return;
    }
    d += `${d === '' ? '' : ' '}${pen ? 'L' : 'M'}${r(x(i))} ${r(y)}`;
    pen = true;
  });
  return d;
}

/** Ticks of a linear axis from 0 to `max` (a niceMax): 0, half and max. */
export function linearTicks(max: number): number[] {
  return max <= 1 ? [0, 1] : max % 2 === 0 ? [0, max / 2, max] : [0, max];
}

/** Ticks of a log latency axis up to `max`: 1 ms, 10 ms, … as they fit. */
export function logTicks(max: number): number[] {
  const out: number[] = [];
  for (let t = 1; t <= Math.max(max, 10); t *= 10) out.push(t);
  return out;
}

/** A latency as an axis or legend shows it: 5 ms, 1.5 s, 2 min, 1 h. */
export function formatLatency(ms: number | null): string {
  if (ms === null) return '—';
  if (ms < 1_000) return `${ms} ms`;
  if (ms < 60_000) return `${+(ms / 1_000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(1)} min`;
  return `${+(ms / 3_600_000).toFixed(1)} h`;
}

/** A point's time as an axis label: local HH:MM. */
export function clockLabel(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}
