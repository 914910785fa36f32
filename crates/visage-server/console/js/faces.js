// Faces on screen: boxes and landmarks over an image or a video, framing guidance from the
// quality gate's failed checks, and the similarity-against-threshold bar.

import { h } from './dom.js';
import { t } from './i18n.js';

/** Draws each face's box (and landmarks) in image pixels, with an optional label per face. */
export function drawFaces(canvas, width, height, faces, labels = []) {
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, width, height);
  const line = Math.max(2, Math.round(width / 200));
  ctx.lineWidth = line;
  ctx.font = `${Math.max(12, Math.round(width / 30))}px system-ui, sans-serif`;
  faces.forEach((face, i) => {
    const b = face.box;
    const ok = labels[i] && 'ok' in labels[i] ? labels[i].ok : face.quality?.passed ?? true;
    ctx.strokeStyle = ok === null ? '#9aa0a6' : ok ? '#1fb866' : '#f0a500';
    ctx.strokeRect(b.x, b.y, b.width, b.height);
    ctx.fillStyle = '#2f8cff';
    for (const p of face.landmarks ?? []) {
      ctx.beginPath();
      ctx.arc(p.x, p.y, line * 1.2, 0, 2 * Math.PI);
      ctx.fill();
    }
    const text = labels[i]?.text;
    if (text) {
      const metrics = ctx.measureText(text);
      const tall = parseInt(ctx.font, 10) + 6;
      const y = b.y > tall ? b.y - tall : b.y + b.height;
      ctx.fillStyle = ok ? '#1fb866' : '#f0a500';
      ctx.fillRect(b.x - line / 2, y, metrics.width + 8, tall);
      ctx.fillStyle = '#000';
      ctx.fillText(text, b.x + 4, y + tall - 6);
    }
  });
}

const ISSUE_ADVICE = {
  face_too_small: 'guide.closer',
  eyes_too_close: 'guide.closer',
  too_blurry: 'guide.still',
  too_dark: 'guide.dark',
  too_bright: 'guide.bright',
  poor_exposure: 'guide.exposure',
  yaw_too_large: 'guide.turn',
  roll_too_large: 'guide.straight',
};

/** Faces this much narrower than the largest are bystanders in the background. */
const BACKGROUND_RATIO = 0.6;

/**
 * The face the camera is pointed at: the largest, when every other face is a small one in the
 * background; `null` when two faces are alike in size (the person should be alone in view).
 */
export function mainFace(faces) {
  if (faces.length === 0) return null;
  const sorted = [...faces].sort((a, b) => b.box.width - a.box.width);
  const [largest, next] = sorted;
  return !next || next.box.width < BACKGROUND_RATIO * largest.box.width ? largest : null;
}

/** What the person in front of the camera should do, from a detect answer. */
export function guidance(faces) {
  if (faces.length === 0) return { ready: false, advice: [t('guide.noFace')] };
  const face = mainFace(faces);
  if (!face) return { ready: false, advice: [t('guide.oneFace')] };
  const issues = face.quality?.issues ?? [];
  if (issues.length === 0) return { ready: true, advice: [t('guide.ready')] };
  const advice = [...new Set(issues.map((issue) => t(ISSUE_ADVICE[issue] ?? 'guide.other')))];
  return { ready: false, advice };
}

/** The quality gate's failed checks, in words. */
export function issueText(issue) {
  return t(ISSUE_ADVICE[issue] ?? 'guide.other');
}

/** Similarity and threshold on one 0..1 bar (scores below 0 show at 0). */
export function scoreBar(similarity, threshold, matched) {
  const clamp = (v) => Math.max(0, Math.min(1, v));
  const label = t('match.barLabel', { similarity: similarity.toFixed(3), threshold: threshold.toFixed(3) });
  return h('div', { class: 'score', role: 'img', 'aria-label': label },
    h('div', { class: `score-fill ${matched ? 'ok' : 'no'}`, style: { width: `${(clamp(similarity) * 100).toFixed(1)}%` } }),
    h('div', { class: 'score-threshold', style: { left: `${(clamp(threshold) * 100).toFixed(1)}%` } }),
    h('span', { class: 'score-text' }, label));
}

/** "pass (score 0.97)" in the page's language. */
export function livenessText(liveness) {
  if (!liveness) return t('liveness.off');
  const score = liveness.score === null || liveness.score === undefined ? '' : ` · ${t('liveness.score')} ${liveness.score.toFixed(3)}`;
  const reasons = liveness.reasons?.length ? ` (${liveness.reasons.map(issueText).join('; ')})` : '';
  return `${t(`liveness.${liveness.result}`)}${score}${reasons}`;
}
