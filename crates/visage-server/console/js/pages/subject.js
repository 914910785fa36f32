// One subject: consent, faces with their quality, deleting a face, withdrawal of consent, erasure.

import { api, can } from '../api.js';
import { field, fill, formatTime, h, table } from '../dom.js';
import { issueText } from '../faces.js';
import { lang, t } from '../i18n.js';

const QUALITY_SHOWN = ['face_width', 'inter_eye_distance', 'sharpness', 'brightness', 'yaw_degrees', 'roll_degrees'];

function quality(q) {
  const shown = QUALITY_SHOWN.filter((name) => typeof q?.[name] === 'number')
    .map((name) => `${t(`quality.${name}`)} ${q[name].toFixed(name === 'brightness' ? 2 : 0)}`);
  const issues = (q?.issues ?? []).map(issueText);
  return [shown.join(' · '), issues.length ? h('div', { class: 'warn' }, issues.join('; ')) : null];
}

function erasure(subject) {
  const confirm = h('input', { id: 'erase-confirm', autocomplete: 'off' });
  const button = h('button', { type: 'submit', class: 'danger', disabled: true, id: 'erase' }, t('subject.erase'));
  const message = h('p', { role: 'alert', class: 'error' });
  confirm.addEventListener('input', () => {
    button.disabled = confirm.value !== subject.external_id;
  });
  const form = h('form', { class: 'card danger-zone', id: 'erasure' },
    h('h2', {}, t('subject.eraseTitle')),
    h('p', {}, t('subject.eraseWhat')),
    h('ul', {}, ['subject.eraseTemplates', 'subject.eraseImages', 'subject.eraseRecord', 'subject.eraseIndex'].map((k) => h('li', {}, t(k)))),
    h('p', {}, t('subject.eraseKept')),
    field(t('subject.eraseType', { id: subject.external_id }), confirm),
    message,
    button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('DELETE', `/v1/subjects/${subject.id}`);
      window.location.hash = '#/subjects';
    } catch (err) {
      fill(message, err.message);
    }
  });
  return form;
}

// Withdrawal of consent: erased at once, or (retention.after_withdrawal_days) out of matching
// until the retention job erases the subject.
function withdrawal(subject, rerender) {
  const message = h('p', { role: 'alert', class: 'error' });
  const button = h('button', { type: 'submit', class: 'danger', id: 'withdraw' }, t('subject.withdraw'));
  const form = h('form', { class: 'card danger-zone', id: 'withdrawal' },
    h('h2', {}, t('subject.withdrawTitle')),
    h('p', {}, t('subject.withdrawWhat')),
    message,
    button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!window.confirm(t('subject.withdrawConfirm'))) return;
    try {
      const done = await api('POST', `/v1/subjects/${subject.id}/consent/withdraw`, { json: {} });
      if (done.erased) window.location.hash = '#/subjects';
      else rerender();
    } catch (err) {
      fill(message, err.message);
    }
  });
  return form;
}

export async function render({ args, rerender }) {
  const id = args[0];
  const [subject, { faces }] = await Promise.all([
    api('GET', `/v1/subjects/${id}`),
    api('GET', `/v1/subjects/${id}/faces`),
  ]);
  const consent = subject.consent;
  const rows = faces.map((f) => h('tr', {},
    h('td', {}, formatTime(f.created_at, lang())),
    h('td', {}, f.model),
    h('td', {}, quality(f.quality)),
    h('td', {}, can('enrol')
      ? h('button', {
        type: 'button',
        class: 'danger small',
        'aria-label': t('subject.deleteFaceOf', { time: formatTime(f.created_at, lang()) }),
        onclick: async () => {
          if (!window.confirm(t('subject.deleteFaceConfirm'))) return;
          await api('DELETE', `/v1/subjects/${id}/faces/${f.id}`);
          rerender();
        },
      }, t('subject.deleteFace'))
      : '')));
  return h('section', {},
    h('p', {}, h('a', { href: '#/subjects' }, `← ${t('nav.subjects')}`)),
    h('h1', { id: 'subject-title' }, subject.external_id),
    h('dl', { class: 'facts' },
      h('dt', {}, t('subjects.collection')), h('dd', {}, subject.collection),
      h('dt', {}, t('subjects.created')), h('dd', {}, formatTime(subject.created_at, lang())),
      h('dt', {}, t('consent.givenBy')), h('dd', {}, consent?.given_by ?? '—'),
      h('dt', {}, t('consent.givenAt')), h('dd', {}, consent ? formatTime(consent.given_at, lang()) : '—'),
      h('dt', {}, t('consent.purpose')), h('dd', {}, consent?.purpose ?? '—'),
      h('dt', {}, t('consent.reference')), h('dd', {}, consent?.reference ?? '—'),
      consent?.expires_at ? [h('dt', {}, t('consent.expiresAt')), h('dd', {}, formatTime(consent.expires_at, lang()))] : null,
      consent?.withdrawn_at
        ? [h('dt', {}, t('consent.withdrawnAt')), h('dd', { id: 'withdrawn-at' }, formatTime(consent.withdrawn_at, lang()))]
        : null),
    h('h2', {}, t('subject.faces', { count: faces.length })),
    faces.length
      ? table(t('subject.faces', { count: faces.length }), [t('subjects.created'), t('subject.recognizer'), t('subject.quality'), ''], rows)
      : h('p', { class: 'note' }, t('subject.noFaces')),
    can('enrol') ? h('p', {}, h('a', { class: 'button primary', href: `#/enrol/${subject.id}`, id: 'enrol-link' }, t('subject.enrol'))) : null,
    can('enrol') && !consent?.withdrawn_at ? withdrawal(subject, rerender) : null,
    can('enrol') ? erasure(subject) : null);
}
