// API keys: list, create (the secret is shown once), revoke.

import { api } from '../api.js';
import { field, fill, formatTime, h, table } from '../dom.js';
import { lang, t } from '../i18n.js';

const ROLES = ['read', 'verify', 'enrol', 'admin'];

function createForm(onCreated) {
  const name = h('input', { id: 'key-name', required: true, maxLength: 64, autocomplete: 'off' });
  const role = h('select', { id: 'key-role' }, ROLES.map((r) => h('option', { value: r, selected: r === 'verify' }, t(`role.${r}`))));
  const collections = h('input', { id: 'key-collections', autocomplete: 'off', placeholder: 'default, door-1' });
  const message = h('div', { role: 'alert', id: 'key-created' });
  const form = h('form', { class: 'card', id: 'new-key' },
    h('h2', {}, t('keys.new')),
    field(t('keys.name'), name, t('keys.nameHint')),
    field(t('keys.role'), role),
    field(t('keys.collections'), collections, t('keys.collectionsHint')),
    h('button', { type: 'submit', class: 'primary' }, t('keys.create')),
    message);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const scope = collections.value.split(',').map((c) => c.trim()).filter(Boolean);
    try {
      const created = await api('POST', '/v1/keys', { json: { name: name.value.trim(), role: role.value, collections: scope.length ? scope : undefined } });
      const token = h('code', { id: 'new-token' }, created.token);
      const copy = h('button', { type: 'button', class: 'small', onclick: () => navigator.clipboard?.writeText(created.token) }, t('keys.copy'));
      fill(message, h('div', { class: 'card secret' }, h('p', {}, h('strong', {}, t('keys.shownOnce'))), token, ' ', copy));
      name.value = '';
      await onCreated();
    } catch (err) {
      fill(message, h('p', { class: 'error' }, err.message));
    }
  });
  return form;
}

export async function render() {
  const list = h('div', { id: 'key-list' });
  async function load() {
    const { keys } = await api('GET', '/v1/keys');
    const rows = keys.map((k) => h('tr', { dataset: { id: k.id } },
      h('td', {}, k.name),
      h('td', {}, h('code', {}, k.id)),
      h('td', {}, t(`role.${k.role}`)),
      h('td', {}, k.collections ? k.collections.join(', ') : t('keys.allCollections')),
      h('td', {}, formatTime(k.created_at, lang())),
      h('td', {}, k.revoked_at
        ? t('keys.revokedAt', { time: formatTime(k.revoked_at, lang()) })
        : h('button', {
          type: 'button',
          class: 'danger small',
          'aria-label': t('keys.revokeNamed', { name: k.name }),
          onclick: async () => {
            if (!window.confirm(t('keys.revokeConfirm', { name: k.name }))) return;
            await api('DELETE', `/v1/keys/${k.id}`);
            await load();
          },
        }, t('keys.revoke')))));
    fill(list, table(t('nav.keys'), [t('keys.name'), t('keys.id'), t('keys.role'), t('keys.collections'), t('subjects.created'), ''], rows));
  }
  await load();
  return h('section', {}, h('h1', {}, t('nav.keys')), h('p', { class: 'note' }, t('keys.intro')), list, createForm(load));
}
