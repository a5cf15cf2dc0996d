/**
 * The charts view: received, delivered and failed events and delivery latency percentiles for
 * the last hour and the last day, from `GET /api/stats` (the store's counts, not this page's
 * memory). Inline SVG drawn from chart-geometry.ts: no chart library, no inline style or script.
 */
import { useCallback, useEffect, useState } from 'preact/hooks';
import {
  clockLabel,
  formatLatency,
  linearTicks,
  linePath,
  logTicks,
  niceMax,
  xAt,
  yLinear,
  yLog,
  type Frame,
} from './chart-geometry.ts';
import { errorText } from './format.ts';
import { useSession } from './session.ts';
import type { StatsRange, StatsSeries } from './stats-model.ts';

/** Refreshed while shown: the current minute fills up. */
const POLL_MS = 30_000;
const WIDTH = 640;
const HEIGHT = 220;
const FRAME: Frame = { left: 88, top: 14, width: WIDTH - 88 - 14, height: HEIGHT - 14 - 40 };

const RANGES: { range: StatsRange; title: string; per: string }[] = [
  { range: 'hour', title: 'Last hour', per: 'per minute' },
  { range: 'day', title: 'Last day', per: 'per 15 minutes' },
];

interface Series {
  key: string;
  label: string;
  values: (number | null)[];
}

function Legend(props: { series: Series[] }) {
  return (
    <ul class="chart-legend">
      {props.series.map((s) => (
        <li key={s.key}>
          <span class={`swatch series-${s.key}`} aria-hidden="true" />
          {s.label}
        </li>
      ))}
    </ul>
  );
}

/** One chart: lines over time, a y axis (linear counts or log latency) and time labels. */
function LineChart(props: {
  label: string;
  stats: StatsSeries;
  series: Series[];
  scale: 'linear' | 'log';
}) {
  const { stats, series, scale } = props;
  const n = stats.points.length;
  const top = Math.max(0, ...series.flatMap((s) => s.values.map((v) => v ?? 0)));
  const max = scale === 'linear' ? niceMax(top) : niceMax(Math.max(top, 10));
  const y = (v: number) => (scale === 'linear' ? yLinear(FRAME, max, v) : yLog(FRAME, max, v));
  const ticks = scale === 'linear' ? linearTicks(max) : logTicks(max);
  const x = (i: number) => xAt(FRAME, n, i);
  const labelled = n > 0 ? [0, Math.floor((n - 1) / 2), n - 1] : [];
  const bottom = FRAME.top + FRAME.height;
  return (
    <figure class="chart">
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-label={props.label}
        class="chart-svg"
        preserveAspectRatio="xMidYMid meet"
      >
        {ticks.map((t) => (
          <g key={t} class="chart-tick">
            <line x1={FRAME.left} x2={FRAME.left + FRAME.width} y1={y(t)} y2={y(t)} />
            <text x={FRAME.left - 6} y={y(t)} dy="0.35em" text-anchor="end">
              {scale === 'log' ? formatLatency(t) : t}
            </text>
          </g>
        ))}
        <line
          class="chart-axis"
          x1={FRAME.left}
          x2={FRAME.left + FRAME.width}
          y1={bottom}
          y2={bottom}
        />
        {labelled.map((i, k) => (
          <text
            key={i}
            class="chart-time"
            x={x(i)}
            y={bottom + 26}
            text-anchor={k === 0 ? 'start' : k === labelled.length - 1 ? 'end' : 'middle'}
          >
            {clockLabel(stats.points[i]!.at)}
          </text>
        ))}
        {series.map((s) => (
          <path
            key={s.key}
            class={`chart-line series-${s.key}`}
            d={linePath(
              s.values.map((v) => (v === null ? null : y(v))),
              x,
            )}
          />
        ))}
        {/* Single points (a value between two gaps) would draw nothing as a line. */}
        {series.map((s) =>
          s.values.map((v, i) =>
            v !== null &&
            (s.values[i - 1] ?? null) === null &&
            (s.values[i + 1] ?? null) === null ? (
              <circle
                key={`${s.key}-${i}`}
                class={`chart-dot series-${s.key}`}
                cx={x(i)}
                cy={y(v)}
                r={3}
              />
            ) : null,
          ),
        )}
      </svg>
      <figcaption>
        <Legend series={series} />
      </figcaption>
    </figure>
  );
}

function RangeCharts(props: { title: string; per: string; stats: StatsSeries }) {
  const { stats, title, per } = props;
  const t = stats.totals;
  const pts = stats.points;
  const counts: Series[] = [
    { key: 'received', label: 'received', values: pts.map((p) => p.received) },
    { key: 'delivered', label: 'delivered', values: pts.map((p) => p.delivered) },
    { key: 'failed', label: 'failed', values: pts.map((p) => p.failed) },
  ];
  const latency: Series[] = (['p50', 'p90', 'p99'] as const).map((q) => ({
    key: q,
    label: q,
    values: pts.map((p) => p.latencyMs[q]),
  }));
  return (
    <>
      <p class="stats-totals" data-totals>
        <strong>{t.received}</strong> received · <strong>{t.delivered}</strong> delivered ·{' '}
        <strong>{t.failed}</strong> failed · latency p50 {formatLatency(t.latencyMs.p50)}, p90{' '}
        {formatLatency(t.latencyMs.p90)}, p99 {formatLatency(t.latencyMs.p99)}
      </p>
      <div class="charts-pair">
        <div>
          <h4>Events {per}</h4>
          <LineChart
            label={`${title}: events received, delivered and failed ${per}`}
            stats={stats}
            series={counts}
            scale="linear"
          />
        </div>
        <div>
          <h4>Delivery latency {per}</h4>
          <LineChart
            label={`${title}: delivery latency p50, p90 and p99 ${per}, log scale`}
            stats={stats}
            series={latency}
            scale="log"
          />
        </div>
      </div>
    </>
  );
}

export function ChartsView() {
  const { api } = useSession();
  const [stats, setStats] = useState<Partial<Record<StatsRange, StatsSeries>>>({});
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const [hour, day] = await Promise.all([api.stats('hour'), api.stats('day')]);
      setStats({ hour, day });
      setError(null);
    } catch (err) {
      setError(`Could not load the statistics: ${errorText(err)}`);
    }
  }, [api]);

  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), POLL_MS);
    return () => clearInterval(timer);
  }, [load]);

  return (
    <section aria-labelledby="charts-heading">
      <h2 id="charts-heading" tabIndex={-1}>
        Charts
      </h2>
      <p class="muted">
        Counted by the store as events go through, for every relay that shares it. Latency: from
        receipt to the end of the attempt that delivered, first deliveries only.
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {RANGES.map(({ range, title, per }) => {
        const s = stats[range];
        return (
          <section
            key={range}
            class="charts-range"
            aria-labelledby={`charts-${range}`}
            data-range={range}
          >
            <h3 id={`charts-${range}`}>{title}</h3>
            {s ? (
              <RangeCharts title={title} per={per} stats={s} />
            ) : (
              !error && <p class="muted">Loading…</p>
            )}
          </section>
        );
      })}
    </section>
  );
}
