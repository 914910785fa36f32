// Subjects of a collection: search by external id, pages, and a new subject with its consent.

import { api, can } from '../api.js';
import { field, fill, formatTime, h, table } from '../dom.js';
import { lang, t } from '../i18n.js';

/** The collection the pages work in, kept for the tab. */
export function currentCollection() {
  return sessionStorage.getItem('visage.collection') ?? 'default';
}

/** A select of the collections the key may use; remembers the choice for the tab. */
export async function collectionPicker(onChange) {
  const { collections } = await api('GET', '/v1/collections');
  const allowed = collections.map((c) => c.id);
  let current = currentCollection();
  if (!allowed.includes(current) && allowed.length) current = allowed[0];
  sessionStorage.setItem('visage.collection', current);
  const select = h('select', { id: 'collection' }, allowed.map((id) => h('option', { value: id, selected: id === current }, id)));
  select.addEventListener('change', () => {
    sessionStorage.setItem('visage.collection', select.value);
    onChange?.(select.value);
  });
  return field(t('subjects.collection'), select);
}

/** Local date-time for an <input type=datetime-local>. */
function localNow() {
  const now = new Date();
  now.setMinutes(now.getMinutes() - now.getTimezoneOffset());
  return now.toISOString().slice(0, 16);
}

function createForm() {
  const externalId = h('input', { id: 'new-external-id', required: true, maxLength: 256, autocomplete: 'off' });
  const givenBy = h('input', { id: 'consent-given-by', required: true, autocomplete: 'off' });
  const givenAt = h('input', { id: 'consent-given-at', type: 'datetime-local', required: true, value: localNow() });
  const purpose = h('input', { id: 'consent-purpose', required: true, autocomplete: 'off' });
  const reference = h('input', { id: 'consent-reference', autocomplete: 'off' });
  const message = h('p', { role: 'alert', class: 'error' });
  const form = h('form', { class: 'card', id: 'new-subject' },
    h('h2', {}, t('subjects.new')),
    field(t('subjects.externalId'), externalId, t('subjects.externalIdHint')),
    h('fieldset', {},
      h('legend', {}, t('consent.title')),
      field(t('consent.givenBy'), givenBy, t('consent.givenByHint')),
      field(t('consent.givenAt'), givenAt),
      field(t('consent.purpose'), purpose, t('consent.purposeHint')),
      field(t('consent.reference'), reference, t('consent.referenceHint'))),
    message,
    h('button', { type: 'submit', class: 'primary' }, t('subjects.create')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    fill(message);
    try {
      const subject = await api('POST', '/v1/subjects', {
        json: {
          external_id: externalId.value.trim(),
          collection: currentCollection(),
          consent: {
            given_by: givenBy.value.trim(),
            given_at: new Date(givenAt.value).toISOString(),
            purpose: purpose.value.trim(),
            reference: reference.value.trim() || undefined,
          },
        },
      });
      window.location.hash = `#/subject/${subject.id}`;
    } catch (err) {
      fill(message, err.code === 'subject_exists' ? t('subjects.exists') : err.message);
    }
  });
  return form;
}

export async function render({ rerender }) {
  const results = h('div', { id: 'subject-list' });
  const search = h('input', { type: 'search', id: 'search-external-id', autocomplete: 'off' });
  const cursors = [undefined];
  const pager = h('div', { class: 'actions' });

  async function load(page) {
    const cursor = cursors[page];
    const answer = await api('GET', '/v1/subjects', {
      query: { collection: currentCollection(), external_id: search.value.trim(), cursor, limit: 20 },
    });
    cursors[page + 1] = answer.next_cursor;
    const rows = answer.items.map((s) => h('tr', {},
      h('td', {}, h('a', { href: `#/subject/${s.id}` }, s.external_id)),
      h('td', {}, String(s.face_count)),
      h('td', {}, s.consent ? s.consent.purpose : '—'),
      h('td', {}, formatTime(s.created_at, lang()))));
    fill(results, rows.length
      ? table(t('nav.subjects'), [t('subjects.externalId'), t('subjects.faces'), t('consent.purpose'), t('subjects.created')], rows)
      : h('p', { class: 'note' }, search.value ? t('subjects.noneFound') : t('subjects.none')));
    fill(pager,
      page > 0 ? h('button', { type: 'button', onclick: () => load(page - 1) }, t('app.previous')) : null,
      answer.next_cursor ? h('button', { type: 'button', id: 'next-page', onclick: () => load(page + 1) }, t('app.next')) : null);
  }

  const searchForm = h('form', { class: 'inline', role: 'search' },
    field(t('subjects.search'), search, t('subjects.searchHint')),
    h('button', { type: 'submit' }, t('subjects.find')));
  searchForm.addEventListener('submit', (event) => {
    event.preventDefault();
    cursors.length = 1;
    load(0);
  });
  const picker = await collectionPicker(() => rerender());
  await load(0);
  return h('section', {},
    h('h1', {}, t('nav.subjects')),
    h('div', { class: 'toolbar' }, picker, searchForm),
    results,
    pager,
    can('enrol') ? createForm() : null);
}
