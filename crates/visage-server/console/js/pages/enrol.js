// Enrolment from the camera (capture once the quality gate passes) or from files, one request
// per file so that each gets its own answer.

import { api, formData } from '../api.js';
import { field, fill, h } from '../dom.js';
import { imageSource } from '../camera.js';
import { issueText } from '../faces.js';
import { t } from '../i18n.js';
import { currentCollection } from './subjects.js';

function findSubjectForm() {
  const input = h('input', { id: 'enrol-external-id', required: true, autocomplete: 'off' });
  const message = h('p', { role: 'alert', class: 'error' });
  const form = h('form', { class: 'card narrow' },
    field(t('subjects.externalId'), input, t('enrol.findHint', { collection: currentCollection() })),
    message,
    h('button', { type: 'submit', class: 'primary' }, t('subjects.find')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const answer = await api('GET', '/v1/subjects', { query: { collection: currentCollection(), external_id: input.value.trim() } });
    if (answer.items.length) window.location.hash = `#/enrol/${answer.items[0].id}`;
    else fill(message, t('subjects.noneFound'));
  });
  return form;
}

/** The answer to a refused image, in words. */
export function refusal(err) {
  if (err.code === 'low_quality') {
    const reasons = err.details?.reasons ?? [];
    return `${t('error.low_quality')}${reasons.length ? `: ${reasons.map(issueText).join('; ')}` : ''}`;
  }
  const known = t(`error.${err.code}`, {}, null);
  return known ?? `${err.code}: ${err.message}`;
}

export async function render({ args }) {
  if (!args[0]) return h('section', {}, h('h1', {}, t('nav.enrol')), h('p', {}, t('enrol.pick')), findSubjectForm());
  const subject = await api('GET', `/v1/subjects/${args[0]}`);
  const results = h('ol', { class: 'results', id: 'enrol-results', 'aria-live': 'polite' });
  const progress = h('p', { role: 'status', id: 'enrol-progress' });
  const advice = h('p', { class: 'note', id: 'enrol-advice' });
  let source = null;
  async function enrol(images) {
    let stored = 0;
    let latest = null;
    for (const [i, image] of images.entries()) {
      fill(progress, t('enrol.progress', { done: i, total: images.length }));
      const name = image.name ?? t('enrol.frame');
      try {
        const answer = await api('POST', `/v1/subjects/${subject.id}/faces`, { form: formData({ image }) });
        stored += answer.faces.length;
        latest = answer.advice;
        results.append(h('li', { class: 'ok' }, t('enrol.stored', { name })));
      } catch (err) {
        results.append(h('li', { class: 'error' }, `${name}: ${refusal(err)}`));
      }
    }
    fill(progress, t('enrol.done', { stored, total: images.length }));
    if (latest) fill(advice, latest.map((a) => t(`enrol.advice.${a.code}`, {}, a.message)).join(' '));
    source.ready();
  }
  source = imageSource({ onImages: enrol, requireQuality: true, multiple: true, captureLabel: t('enrol.capture') });
  return h('section', {},
    h('p', {}, h('a', { href: `#/subject/${subject.id}` }, `← ${subject.external_id}`)),
    h('h1', {}, t('enrol.title', { id: subject.external_id })),
    h('p', { class: 'note' }, t('enrol.intro')),
    source.element,
    progress,
    advice,
    results);
}
