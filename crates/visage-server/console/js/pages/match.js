// Verify (1:1) and identify (1:N, or every face of a photo) from the camera or a file.

import { api, formData } from '../api.js';
import { field, fill, h } from '../dom.js';
import { imageSource, stillWithFaces } from '../camera.js';
import { livenessText, scoreBar } from '../faces.js';
import { t } from '../i18n.js';
import { refusal } from './enrol.js';
import { collectionPicker, currentCollection } from './subjects.js';

function livenessSelect() {
  return h('select', { id: 'liveness-mode' },
    ['', 'off', 'report', 'require'].map((mode) => h('option', { value: mode }, t(`match.liveness.${mode || 'default'}`))));
}

function farText(answer) {
  return t('match.far', { threshold: answer.threshold.toFixed(4), far: `${(answer.far_target * 100).toPrecision(2)}%` });
}

/** The probe with its face boxed once the image's size is known. */
function probeWithBox(blob, box, label) {
  const holder = h('div');
  const img = new Image();
  img.onload = () => fill(holder, stillWithFaces(blob, img.naturalWidth, img.naturalHeight, [{ box }], [label]));
  img.src = URL.createObjectURL(blob);
  return holder;
}

function verifyResult(answer, blob) {
  const matched = answer.match;
  return h('div', { class: `card result ${matched ? 'ok' : 'no'}`, id: 'result' },
    h('h2', { id: 'decision' }, matched ? t('match.match') : t('match.noMatch')),
    scoreBar(answer.similarity, answer.threshold, matched),
    h('p', {}, farText(answer)),
    h('p', { id: 'liveness-result' }, `${t('match.livenessLabel')}: ${livenessText(answer.liveness)}`),
    h('p', { class: 'note' }, t('match.decisionId', { id: answer.verification_id })),
    probeWithBox(blob, answer.face.box, { text: matched ? t('match.match') : t('match.noMatch'), ok: matched }));
}

function candidateList(candidates, threshold) {
  if (!candidates.length) return h('p', { class: 'note' }, t('match.noCandidates'));
  return h('ol', { class: 'candidates' }, candidates.map((c) => h('li', {},
    h('a', { href: `#/subject/${c.subject_id}` }, c.external_id),
    scoreBar(c.similarity, threshold, c.similarity >= threshold))));
}

function identifyResult(answer, blob) {
  if (answer.faces) {
    const labels = answer.faces.map((f) => {
      const best = f.candidates[0];
      const named = best && best.similarity >= answer.threshold;
      return { text: named ? best.external_id : f.searched ? t('match.unknown') : t('match.notSearched'), ok: named };
    });
    return h('div', { class: 'card result', id: 'result' },
      h('h2', { id: 'decision' }, t('match.facesFound', { count: answer.faces.length })),
      h('p', {}, farText(answer)),
      stillWithFaces(blob, answer.width, answer.height, answer.faces.map((f) => f.face), labels),
      h('ol', { class: 'faces', id: 'face-list' }, answer.faces.map((f, i) => h('li', {},
        h('strong', {}, labels[i].text), ' ',
        f.face.liveness ? h('span', {}, `· ${livenessText(f.face.liveness)}`) : null,
        f.searched ? candidateList(f.candidates, answer.threshold) : h('p', { class: 'note' }, t('match.notSearchedWhy'))))));
  }
  const best = answer.candidates[0];
  const named = best && best.similarity >= answer.threshold;
  return h('div', { class: `card result ${named ? 'ok' : 'no'}`, id: 'result' },
    h('h2', { id: 'decision' }, named ? t('match.identified', { id: best.external_id }) : t('match.unknownPerson')),
    h('p', {}, farText(answer)),
    h('p', { id: 'liveness-result' }, `${t('match.livenessLabel')}: ${livenessText(answer.liveness)}`),
    candidateList(answer.candidates, answer.threshold),
    h('p', { class: 'note' }, t('match.decisionId', { id: answer.verification_id })),
    probeWithBox(blob, answer.face.box, { text: named ? best.external_id : t('match.unknown'), ok: named }));
}

export async function render({ name, args }) {
  const identify = name === 'identify';
  const output = h('div', { id: 'match-output', 'aria-live': 'polite' });
  const liveness = livenessSelect();
  const subjectInput = h('input', { id: 'verify-external-id', autocomplete: 'off' });
  const allFaces = h('input', { type: 'checkbox', id: 'all-faces', checked: true });
  let subjectId = args[0];
  if (subjectId) {
    const subject = await api('GET', `/v1/subjects/${subjectId}`);
    subjectInput.value = subject.external_id;
  }
  let source = null;
  async function run([blob]) {
    fill(output, h('p', { class: 'loading' }, t('app.loading')));
    try {
      let answer;
      if (identify) {
        answer = await api('POST', '/v1/identify', {
          form: formData({ image: blob, collection: currentCollection(), liveness: liveness.value, faces: allFaces.checked ? 'all' : undefined }),
        });
        fill(output, identifyResult(answer, blob));
      } else {
        const found = await api('GET', '/v1/subjects', { query: { collection: currentCollection(), external_id: subjectInput.value.trim() } });
        if (!found.items.length) throw Object.assign(new Error(t('subjects.noneFound')), { code: 'subject_not_found' });
        subjectId = found.items[0].id;
        answer = await api('POST', '/v1/verify', { form: formData({ image: blob, subject_id: subjectId, liveness: liveness.value }) });
        fill(output, verifyResult(answer, blob));
      }
    } catch (err) {
      fill(output, h('div', { class: 'card result no', id: 'result' },
        h('h2', { id: 'decision' }, err.code === 'spoof_detected' ? t('match.spoof') : t('match.refused')),
        h('p', { role: 'alert', class: 'error', id: 'match-error' }, refusal(err))));
    }
    source.ready();
  }
  source = imageSource({ onImages: run, captureLabel: identify ? t('match.identifyNow') : t('match.verifyNow') });
  return h('section', {},
    h('h1', {}, identify ? t('nav.identify') : t('nav.verify')),
    h('p', { class: 'note' }, identify ? t('match.identifyIntro') : t('match.verifyIntro')),
    h('div', { class: 'toolbar' },
      await collectionPicker(),
      identify ? h('div', { class: 'field check' }, allFaces, h('label', { for: allFaces.id }, t('match.allFaces'))) : field(t('match.subject'), subjectInput, t('match.subjectHint')),
      field(t('match.livenessMode'), liveness)),
    source.element,
    output);
}
