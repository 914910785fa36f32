// Sign-in with an API key. The key is checked with GET /v1/keys/me before it is kept.

import { ApiError, api, session } from '../api.js';
import { field, h, fill } from '../dom.js';
import { t } from '../i18n.js';

export function render({ reason, onSignedIn }) {
  const input = h('input', { type: 'password', id: 'api-key', autocomplete: 'off', spellcheck: false, required: true, placeholder: 'vsg_…' });
  const message = h('p', { class: reason === 'revoked' ? 'error' : 'note', role: 'alert', id: 'signin-message' },
    reason ? t(`signin.${reason}`) : '');
  const button = h('button', { type: 'submit', class: 'primary' }, t('signin.submit'));
  const form = h('form', { class: 'card narrow', id: 'signin' },
    h('h1', {}, t('signin.title')),
    h('p', {}, t('signin.intro')),
    field(t('signin.key'), input, t('signin.keyHint')),
    message,
    button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    button.disabled = true;
    try {
      const me = await api('GET', '/v1/keys/me', { key });
      session.signIn(key, me);
      onSignedIn();
    } catch (err) {
      message.className = 'error';
      fill(message, err instanceof ApiError && err.status === 401 ? t('signin.rejected') : err.message);
      button.disabled = false;
    }
  });
  queueMicrotask(() => input.focus());
  return form;
}
