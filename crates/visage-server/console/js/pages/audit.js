// The audit trail with filters, oldest first, a page at a time.

import { api } from '../api.js';
import { field, fill, formatTime, h, table } from '../dom.js';
import { lang, t } from '../i18n.js';

const ACTIONS = ['', 'collection.create', 'subject.create', 'subject.erase', 'face.enrol', 'face.delete', 'verify', 'identify',
  'liveness.check', 'liveness.spoof', 'verification.feedback', 'image.delete', 'image.sweep', 'key.create', 'key.revoke',
  'model.reembed', 'model.prune', 'probe.view', 'probe.expire'];
const OUTCOMES = ['', 'ok', 'refused', 'failed', 'match', 'no_match'];

export async function render() {
  const action = h('select', { id: 'audit-action' }, ACTIONS.map((a) => h('option', { value: a }, a || t('review.any'))));
  const outcome = h('select', { id: 'audit-outcome' }, OUTCOMES.map((o) => h('option', { value: o }, o || t('review.any'))));
  const subject = h('input', { id: 'audit-subject', autocomplete: 'off', placeholder: 'uuid' });
  const key = h('input', { id: 'audit-key', autocomplete: 'off' });
  const from = h('input', { id: 'audit-from', type: 'date' });
  const to = h('input', { id: 'audit-to', type: 'date' });
  const list = h('div', { id: 'audit-list' });
  const more = h('div', { class: 'actions' });
  const message = h('p', { role: 'alert', class: 'error' });
  let rows = [];

  async function load(cursor) {
    fill(message);
    const day = (value, plus) => (value ? new Date(new Date(`${value}T00:00:00`).getTime() + plus * 864e5).toISOString() : '');
    let page;
    try {
      page = await api('GET', '/v1/audit', {
        query: { action: action.value, outcome: outcome.value, subject_id: subject.value.trim(), api_key_id: key.value.trim(), from: day(from.value, 0), to: day(to.value, 1), cursor, limit: 50 },
      });
    } catch (err) {
      fill(message, err.message);
      return;
    }
    if (!cursor) rows = [];
    rows.push(...page.items.map((e) => h('tr', {},
      h('td', {}, String(e.seq)),
      h('td', {}, formatTime(e.at, lang())),
      h('td', {}, e.action),
      h('td', {}, e.outcome),
      h('td', {}, e.api_key_id ?? ''),
      h('td', {}, e.collection ?? ''),
      h('td', {}, e.subject_id ? h('code', {}, e.subject_id) : ''),
      h('td', {}, h('code', { class: 'detail' }, JSON.stringify(e.detail))))));
    fill(list, rows.length
      ? table(t('nav.audit'), ['#', t('review.when'), t('audit.action'), t('audit.outcome'), t('keys.id'), t('subjects.collection'), t('audit.subject'), t('audit.detail')], rows)
      : h('p', { class: 'note' }, t('audit.empty')));
    fill(more, page.next_cursor ? h('button', { type: 'button', onclick: () => load(page.next_cursor) }, t('audit.more')) : null);
  }

  const form = h('form', { class: 'toolbar', id: 'audit-filters' },
    field(t('audit.action'), action), field(t('audit.outcome'), outcome), field(t('audit.subject'), subject),
    field(t('keys.id'), key), field(t('audit.from'), from), field(t('audit.to'), to),
    h('button', { type: 'submit' }, t('audit.apply')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    load();
  });
  await load();
  return h('section', {}, h('h1', {}, t('nav.audit')), h('p', { class: 'note' }, t('audit.intro')), form, message, list, more);
}
