// Readiness, enrolled counts, traffic, liveness and the error rates from labelled decisions.

import { api } from '../api.js';
import { h, percent, table } from '../dom.js';
import { t } from '../i18n.js';

function stat(label, value, note, id) {
  return h('div', { class: 'stat', id }, h('span', { class: 'stat-label' }, label), h('strong', { class: 'stat-value' }, value),
    note ? h('small', {}, note) : null);
}

const ms = (seconds) => (seconds === null || seconds === undefined ? '—' : `${(seconds * 1000).toFixed(0)} ms`);

/** FAR, FRR and EER with their labelled counts; reused by the review page. */
export function errorRates(rates) {
  const needs = (count) => (count < rates.min_labelled ? t('overview.needs', { count, min: rates.min_labelled }) : null);
  return h('div', { class: 'stats', id: 'error-rates' },
    stat(t('overview.far'), percent(rates.far_percent), `${t('overview.impostorLabelled', { count: rates.impostor_labelled })}${needs(rates.impostor_labelled) ? ` · ${needs(rates.impostor_labelled)}` : ''}`, 'far'),
    stat(t('overview.frr'), percent(rates.frr_percent), `${t('overview.genuineLabelled', { count: rates.genuine_labelled })}${needs(rates.genuine_labelled) ? ` · ${needs(rates.genuine_labelled)}` : ''}`, 'frr'),
    stat(t('overview.eer'), percent(rates.eer_percent), t('overview.window', { hours: rates.window_hours }), 'eer'));
}

export async function render() {
  const o = await api('GET', '/v1/overview');
  const checks = Object.entries(o.checks).map(([name, value]) => h('li', {}, `${name}: ${typeof value === 'object' ? JSON.stringify(value) : value}`));
  const live = o.liveness;
  return h('section', {},
    h('h1', {}, t('nav.overview')),
    h('div', { class: 'stats' },
      stat(t('overview.readiness'), o.ready ? t('overview.ready') : t('overview.notReady'), null, 'readiness'),
      stat(t('overview.requests'), String(o.traffic.requests), t('overview.serverErrors', { count: o.traffic.server_errors })),
      stat(t('overview.latency'), `${ms(o.traffic.p50_seconds)} / ${ms(o.traffic.p95_seconds)}`, t('overview.latencyNote')),
      stat(t('overview.liveness'), live.pass_rate === null ? '—' : percent(live.pass_rate * 100, 1),
        t('overview.livenessNote', { pass: live.pass, fail: live.fail, inconclusive: live.inconclusive }))),
    h('h2', {}, t('overview.errorRates')),
    errorRates(o.error_rates),
    h('p', { class: 'note' }, t('overview.ratesNote')),
    h('h2', {}, t('overview.collections')),
    table(t('overview.collections'), [t('subjects.collection'), t('overview.subjects'), t('overview.templates'), t('overview.calibration')],
      o.collections.map((c) => h('tr', {}, h('td', {}, c.collection), h('td', {}, String(c.subjects)), h('td', {}, String(c.templates)),
        h('td', { class: 'calibration' }, c.calibration)))),
    h('details', {}, h('summary', {}, t('overview.checks')), h('ul', {}, checks)),
    o.grafana_url ? h('p', {}, h('a', { href: o.grafana_url, target: '_blank', rel: 'noopener noreferrer' }, t('overview.grafana'))) : null);
}
