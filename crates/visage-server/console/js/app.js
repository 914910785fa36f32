// The console's shell: sign-in gate, menu by role, router (#/page/arg), theme and language.

import { api, can, session } from './api.js';
import { h, fill } from './dom.js';
import { LANGUAGES, lang, setLang, t } from './i18n.js';
import * as audit from './pages/audit.js';
import * as enrol from './pages/enrol.js';
import * as keys from './pages/keys.js';
import * as match from './pages/match.js';
import * as overview from './pages/overview.js';
import * as review from './pages/review.js';
import * as signin from './pages/signin.js';
import * as subject from './pages/subject.js';
import * as subjects from './pages/subjects.js';

/** Route name -> the page module, the role its menu entry needs and its menu label. */
const PAGES = {
  overview: { page: overview, role: 'read', label: 'nav.overview' },
  subjects: { page: subjects, role: 'read', label: 'nav.subjects' },
  subject: { page: subject, role: 'read' },
  enrol: { page: enrol, role: 'enrol', label: 'nav.enrol' },
  verify: { page: match, role: 'verify', label: 'nav.verify' },
  identify: { page: match, role: 'verify', label: 'nav.identify' },
  review: { page: review, role: 'enrol', label: 'nav.review' },
  keys: { page: keys, role: 'admin', label: 'nav.keys' },
  audit: { page: audit, role: 'admin', label: 'nav.audit' },
};

const THEME = 'visage.theme';
let signOutReason = null;

const systemDark = window.matchMedia('(prefers-color-scheme: dark)');

/** The operator's choice, or the system's when the choice is "auto". */
function applyTheme() {
  const theme = localStorage.getItem(THEME) ?? 'auto';
  document.documentElement.dataset.theme = theme === 'auto' ? (systemDark.matches ? 'dark' : 'light') : theme;
}
systemDark.addEventListener('change', applyTheme);

function header() {
  const langSelect = h('select', { id: 'lang', 'aria-label': t('app.language') },
    LANGUAGES.map((code) => h('option', { value: code, selected: code === lang() }, t(`lang.${code}`))));
  langSelect.addEventListener('change', () => {
    setLang(langSelect.value);
    render();
  });
  const theme = localStorage.getItem(THEME) ?? 'auto';
  const themeSelect = h('select', { id: 'theme', 'aria-label': t('app.theme') },
    ['auto', 'light', 'dark'].map((name) => h('option', { value: name, selected: name === theme }, t(`theme.${name}`))));
  themeSelect.addEventListener('change', () => {
    localStorage.setItem(THEME, themeSelect.value);
    applyTheme();
  });
  const who = session.me
    ? h('span', { class: 'who', id: 'who' },
      h('strong', {}, session.me.name), ' · ', t(`role.${session.me.role}`), ' · ',
      session.me.collections ? session.me.collections.join(', ') : t('keys.allCollections'))
    : null;
  const signOut = session.me
    ? h('button', { type: 'button', id: 'sign-out', onclick: () => session.signOut('signedOut') }, t('app.signOut'))
    : null;
  return [h('a', { class: 'brand', href: '#/overview' }, 'visage'), who, h('span', { class: 'spacer' }), langSelect, themeSelect, signOut];
}

function menu(current) {
  return h('ul', {},
    Object.entries(PAGES)
      .filter(([, entry]) => entry.label && can(entry.role))
      .map(([name, entry]) => h('li', {},
        h('a', { href: `#/${name}`, 'aria-current': name === current ? 'page' : undefined }, t(entry.label)))));
}

function route() {
  const [name, ...args] = window.location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  return { name: name || 'overview', args };
}

async function render() {
  document.documentElement.lang = lang();
  document.title = t('app.title');
  document.getElementById('skip').textContent = t('app.skip');
  document.getElementById('menu').setAttribute('aria-label', t('app.menu'));
  fill(document.getElementById('bar'), header());
  const main = document.getElementById('main');
  const nav = document.getElementById('menu');
  if (!session.key) {
    fill(nav);
    fill(main, signin.render({ reason: signOutReason, onSignedIn }));
    return;
  }
  if (!session.me) {
    try {
      session.me = await api('GET', '/v1/keys/me');
    } catch {
      return; // a 401 signed the tab out, which rendered the sign-in page
    }
    fill(document.getElementById('bar'), header());
  }
  const { name, args } = route();
  const entry = PAGES[name];
  fill(nav, menu(name));
  // On a narrow screen the menu is a row that scrolls: keep the current page in view.
  nav.querySelector('[aria-current]')?.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  if (!entry || !can(entry.role)) {
    fill(main, h('h1', {}, t('app.notFound')), h('p', {}, t('app.notAllowed')));
    return;
  }
  fill(main, h('p', { class: 'loading' }, t('app.loading')));
  try {
    const content = await entry.page.render({ name, args, rerender: render });
    if (route().name === name) fill(main, content);
  } catch (err) {
    if (session.key) fill(main, h('h1', {}, t('app.error')), h('p', { class: 'error', role: 'alert' }, `${err.code ?? ''} ${err.message}`));
  }
  main.focus({ preventScroll: true });
}

function onSignedIn() {
  signOutReason = null;
  if (!window.location.hash || window.location.hash === '#/') window.location.hash = '#/overview';
  render();
}

session.onSignOut((reason) => {
  signOutReason = reason;
  render();
});
window.addEventListener('hashchange', render);
// The router owns the hash: the skip link moves focus itself instead of navigating to #main.
document.getElementById('skip').addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('main').focus();
});
applyTheme();
render();
