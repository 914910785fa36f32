// An image from the camera or from files. The camera view asks the service to detect faces in
// a frame about twice a second and shows the box, landmarks and what to change; with
// `requireQuality` the capture button waits until the quality gate passes.

import { api, formData } from './api.js';
import { h, fill } from './dom.js';
import { drawFaces, guidance, mainFace } from './faces.js';
import { t } from './i18n.js';

const GUIDANCE_INTERVAL_MS = 500;

/** Grabs the video's current frame as a JPEG Blob. */
export function grabFrame(video) {
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob((blob) => resolve(blob), 'image/jpeg', 0.92));
}

/**
 * The picker: a camera tab and a file tab. `onImages(blobs)` gets one captured frame, or the
 * chosen files (several when `multiple`).
 */
export function imageSource({ onImages, requireQuality = false, multiple = false, captureLabel }) {
  const status = h('p', { class: 'guidance', role: 'status', 'aria-live': 'polite' });
  const video = h('video', { autoplay: true, muted: true, playsInline: true, 'aria-label': t('camera.view') });
  const overlay = h('canvas', { class: 'overlay', 'aria-hidden': 'true' });
  const captureButton = h('button', { type: 'button', class: 'primary', disabled: true, id: 'capture' },
    captureLabel ?? t('camera.capture'));
  const startButton = h('button', { type: 'button', id: 'camera-start' }, t('camera.start'));
  const stopButton = h('button', { type: 'button', hidden: true, id: 'camera-stop' }, t('camera.stop'));
  const fileInput = h('input', { type: 'file', accept: 'image/jpeg,image/png,image/webp,image/bmp', multiple, id: 'image-files' });
  let stream = null;
  let timer = null;
  let busy = false;

  async function start() {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } } });
    } catch (err) {
      fill(status, t('camera.denied', { reason: err.message }));
      return;
    }
    video.srcObject = stream;
    startButton.hidden = true;
    stopButton.hidden = false;
    fill(status, t('camera.starting'));
    timer = setInterval(check, GUIDANCE_INTERVAL_MS);
  }

  function stop() {
    clearInterval(timer);
    timer = null;
    for (const track of stream?.getTracks() ?? []) track.stop();
    stream = null;
    video.srcObject = null;
    startButton.hidden = false;
    stopButton.hidden = true;
    captureButton.disabled = true;
    fill(status);
  }

  async function check() {
    if (busy || !stream || video.videoWidth === 0) return;
    if (!video.isConnected) return stop();
    busy = true;
    try {
      const frame = await grabFrame(video);
      const answer = await api('POST', '/v1/detect', { form: formData({ image: frame }) });
      const face = mainFace(answer.faces);
      // Bystanders are drawn without landmarks, in grey: the service searches the main face.
      const shown = answer.faces.map((f) => (f === face || !face ? f : { ...f, landmarks: [] }));
      drawFaces(overlay, answer.width, answer.height, shown, shown.map((f) => (face && f !== face ? { ok: null } : undefined)));
      const g = guidance(answer.faces);
      captureButton.disabled = requireQuality ? !g.ready : !face;
      status.className = `guidance ${g.ready ? 'ok' : 'warn'}`;
      fill(status, g.advice.join(' · '));
    } catch (err) {
      fill(status, err.message);
    } finally {
      busy = false;
    }
  }

  captureButton.addEventListener('click', async () => {
    captureButton.disabled = true;
    const frame = await grabFrame(video);
    frame.name = 'camera.jpg';
    await onImages([frame]);
  });
  startButton.addEventListener('click', start);
  stopButton.addEventListener('click', stop);
  fileInput.addEventListener('change', async () => {
    const files = [...fileInput.files];
    if (files.length) await onImages(files);
    fileInput.value = '';
  });
  window.addEventListener('hashchange', stop, { once: true });

  const cameraPanel = h('div', { class: 'panel', id: 'panel-camera', role: 'tabpanel', 'aria-labelledby': 'tab-camera' },
    h('div', { class: 'stage' }, video, overlay),
    status,
    h('div', { class: 'actions' }, startButton, stopButton, captureButton));
  const filePanel = h('div', { class: 'panel', id: 'panel-file', role: 'tabpanel', 'aria-labelledby': 'tab-file', hidden: true },
    h('label', { for: fileInput.id }, multiple ? t('camera.files') : t('camera.file')), fileInput);
  const tabs = [
    h('button', { type: 'button', role: 'tab', id: 'tab-camera', 'aria-selected': 'true', 'aria-controls': 'panel-camera' }, t('camera.tab')),
    h('button', { type: 'button', role: 'tab', id: 'tab-file', 'aria-selected': 'false', 'aria-controls': 'panel-file', tabindex: '-1' }, t('camera.fileTab')),
  ];
  const select = (i) => {
    tabs.forEach((tab, j) => {
      tab.setAttribute('aria-selected', String(i === j));
      tab.tabIndex = i === j ? 0 : -1;
    });
    cameraPanel.hidden = i !== 0;
    filePanel.hidden = i !== 1;
    if (i !== 0) stop();
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener('click', () => select(i));
    tab.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
        const next = (i + 1) % 2;
        select(next);
        tabs[next].focus();
      }
    });
  });
  return {
    element: h('div', { class: 'source' }, h('div', { role: 'tablist', class: 'tabs', 'aria-label': t('camera.source') }, tabs), cameraPanel, filePanel),
    stop,
    /** Re-enables capture after the caller has dealt with a frame. */
    ready() {
      if (stream) captureButton.disabled = false;
    },
  };
}

/** An image with its faces drawn over it, scaled to the page width. */
export function stillWithFaces(blob, width, height, faces, labels) {
  const url = URL.createObjectURL(blob);
  const img = h('img', { src: url, alt: t('match.probe') });
  const overlay = h('canvas', { class: 'overlay', 'aria-hidden': 'true' });
  drawFaces(overlay, width, height, faces, labels);
  return h('div', { class: 'stage still' }, img, overlay);
}
