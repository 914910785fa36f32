// The review queue: past decisions, closest to their threshold first; a reviewer labels each
// genuine or impostor, which is what FAR, FRR and EER are computed from.

import { api } from '../api.js';
import { fill, formatTime, h, table } from '../dom.js';
import { scoreBar } from '../faces.js';
import { lang, t } from '../i18n.js';
import { errorRates } from './overview.js';

/** The kept probe, fetched only when the reviewer asks: every view is audited. */
function probeButton(d) {
  const button = h('button', { type: 'button', class: 'small', 'aria-label': t('review.showProbeFor', { id: d.id.slice(-6) }) }, t('review.showProbe'));
  button.addEventListener('click', async () => {
    try {
      const image = await api('GET', `/v1/decisions/${d.id}/probe`, { blob: true });
      button.replaceWith(h('img', { class: 'probe', src: URL.createObjectURL(image), alt: t('review.probeAlt') }));
    } catch (err) {
      button.replaceWith(h('span', { class: 'error' }, err.message));
    }
  });
  return button;
}

function select(id, label, options, value) {
  const el = h('select', { id }, options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
  return [el, h('div', { class: 'field' }, h('label', { for: id }, label), el)];
}

export async function render() {
  const rates = h('div', { id: 'rates' });
  const list = h('div', { id: 'queue' });
  const pager = h('div', { class: 'actions' });
  const [mode, modeField] = select('filter-mode', t('review.mode'), [['', t('review.any')], ['verify', t('nav.verify')], ['identify', t('nav.identify')]], '');
  const [labelled, labelledField] = select('filter-labelled', t('review.labelled'),
    [['false', t('review.unlabelled')], ['true', t('review.labelledOnly')], ['', t('review.any')]], 'false');
  const [order, orderField] = select('filter-order', t('review.order'), [['nearest', t('review.nearest')], ['newest', t('review.newest')]], 'nearest');
  const [since, sinceField] = select('filter-since', t('review.since'),
    [['24', t('review.day')], ['168', t('review.week')], ['720', t('review.month')], ['', t('review.all')]], '168');

  async function showRates() {
    const o = await api('GET', '/v1/overview');
    fill(rates, errorRates(o.error_rates));
  }

  async function label(decision, truth, row) {
    try {
      const answer = await api('POST', `/v1/verifications/${decision.id}/feedback`, { json: { truth, source: 'console' } });
      fill(row.querySelector('.label-cell'), t(`review.outcome.${answer.outcome}`));
      row.classList.add('labelled');
    } catch (err) {
      fill(row.querySelector('.label-cell'), h('span', { class: 'error' }, err.message));
    }
    await showRates();
  }

  const probeNote = h('p', { class: 'note', id: 'probe-note' });

  async function load(offset) {
    const query = {
      mode: mode.value,
      labelled: labelled.value,
      order: order.value,
      since: since.value ? new Date(Date.now() - Number(since.value) * 3600e3).toISOString() : '',
      limit: 25,
      offset,
    };
    const page = await api('GET', '/v1/decisions', { query });
    fill(probeNote, page.probe_retention_hours > 0 ? t('review.probesKept', { hours: page.probe_retention_hours }) : t('review.noProbes'));
    const rows = page.items.map((d) => {
      const row = h('tr', { dataset: { id: d.id } },
        h('td', {}, formatTime(d.created_at, lang())),
        h('td', {}, t(`nav.${d.mode}`), h('br'), h('small', {}, d.collection ?? '')),
        h('td', {}, d.probe_kept ? probeButton(d) : h('small', { class: 'note' }, t('review.noProbe')),
          d.probe_quality?.sharpness === undefined ? null : h('small', { class: 'block' }, `${t('quality.sharpness')} ${d.probe_quality.sharpness.toFixed(0)} · ${t('quality.face_width')} ${d.probe_quality.face_width.toFixed(0)} px`)),
        h('td', {}, d.subject ? h('a', { href: `#/subject/${d.subject.id}` }, d.subject.external_id) : h('span', { class: 'note' }, t('review.noSubject')),
          d.subject ? h('small', {}, ` · ${t('review.facesEnrolled', { count: d.subject.face_count })}`) : null),
        h('td', { class: 'bar-cell' }, d.similarity === null ? '—' : scoreBar(d.similarity, d.threshold, d.decision === 'match')),
        h('td', {}, d.decision === 'match' ? t('match.match') : t('match.noMatch'),
          d.liveness_score === null ? null : h('small', { class: 'block' }, `${t('liveness.score')} ${d.liveness_score.toFixed(2)}`)),
        h('td', { class: 'label-cell' }, d.truth
          ? t(`review.truth.${d.truth}`)
          : [
            h('button', { type: 'button', class: 'small', 'aria-label': t('review.genuineFor', { id: d.id.slice(-6) }), onclick: (e) => label(d, 'genuine', e.target.closest('tr')) }, t('review.genuine')),
            ' ',
            h('button', { type: 'button', class: 'small', 'aria-label': t('review.impostorFor', { id: d.id.slice(-6) }), onclick: (e) => label(d, 'impostor', e.target.closest('tr')) }, t('review.impostor')),
          ]));
      return row;
    });
    fill(list, rows.length
      ? table(t('nav.review'), [t('review.when'), t('review.mode'), t('review.probe'), t('review.enrolled'), t('review.similarity'), t('review.decision'), t('review.label')], rows)
      : h('p', { class: 'note' }, t('review.empty')));
    fill(pager,
      offset > 0 ? h('button', { type: 'button', onclick: () => load(Math.max(0, offset - 25)) }, t('app.previous')) : null,
      page.next_offset ? h('button', { type: 'button', onclick: () => load(page.next_offset) }, t('app.next')) : null);
  }

  for (const el of [mode, labelled, order, since]) el.addEventListener('change', () => load(0));
  await Promise.all([showRates(), load(0)]);
  return h('section', {},
    h('h1', {}, t('nav.review')),
    h('p', { class: 'note' }, t('review.intro')),
    rates,
    probeNote,
    h('div', { class: 'toolbar' }, modeField, labelledField, orderField, sinceField),
    list,
    pager);
}
