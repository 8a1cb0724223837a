// rcwatch patroller feed. Every string that comes from a wiki (titles, user
// names, summaries, reasons, rule ids) is written with textContent and
// never parsed as HTML; links are built only from http(s) URLs.
'use strict';

(function () {
  const MAX_SHOWN = 1000;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const list = $('#alerts');
  const status = $('#status');
  const form = $('#filters');
  const nameInput = $('#claim-name');
  const hideRetired = $('#hide-retired');
  const shortcuts = $('#shortcuts');
  const store = {
    get(k) { try { return localStorage.getItem(k); } catch (e) { return null; } },
    set(k, v) { try { localStorage.setItem(k, v); } catch (e) { /* private mode */ } },
  };

  const shown = new Map(); // seq -> {item, li}
  let es = null;
  let lastSeq = 0;
  let retryMs = 1000;
  let retryTimer = null;
  let live = false;
  let statusTimer = null;

  // --- filters <-> URL ----------------------------------------------------
  const listFields = ['wiki', 'ns', 'rule'];

  function filtersFromURL() {
    const q = new URLSearchParams(location.search);
    for (const f of listFields) {
      form.elements[f].value = q.getAll(f).join(', ');
    }
    form.elements.severity.value = q.get('severity') || '';
    form.elements.score.value = q.get('score') || '';
    const users = q.getAll('user').flatMap((v) => v.split(','));
    for (const box of form.querySelectorAll('input[name=user]')) {
      box.checked = users.includes(box.value);
    }
  }

  function queryFromForm() {
    const q = new URLSearchParams();
    for (const f of listFields) {
      const vals = form.elements[f].value.split(',').map((s) => s.trim()).filter(Boolean);
      if (vals.length) q.set(f, vals.join(','));
    }
    if (form.elements.severity.value) q.set('severity', form.elements.severity.value);
    const score = form.elements.score.value.trim();
    if (score !== '' && Number(score) > 0) q.set('score', score);
    const users = Array.from(form.querySelectorAll('input[name=user]:checked')).map((b) => b.value);
    if (users.length) q.set('user', users.join(','));
    return q;
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = queryFromForm();
    const s = q.toString();
    history.replaceState(null, '', s ? '?' + s : location.pathname);
    restart();
  });
  $('#reset').addEventListener('click', () => {
    history.replaceState(null, '', location.pathname);
    filtersFromURL();
    restart();
  });

  // --- preferences --------------------------------------------------------
  nameInput.value = store.get('rcwatch.name') || '';
  nameInput.addEventListener('change', () => store.set('rcwatch.name', nameInput.value.trim()));
  hideRetired.checked = store.get('rcwatch.hideRetired') === '1';
  document.body.classList.toggle('hide-retired', hideRetired.checked);
  hideRetired.addEventListener('change', () => {
    store.set('rcwatch.hideRetired', hideRetired.checked ? '1' : '0');
    document.body.classList.toggle('hide-retired', hideRetired.checked);
  });
  shortcuts.checked = store.get('rcwatch.shortcuts') === '1';
  $('#keys-help').hidden = !shortcuts.checked;
  shortcuts.addEventListener('change', () => {
    store.set('rcwatch.shortcuts', shortcuts.checked ? '1' : '0');
    $('#keys-help').hidden = !shortcuts.checked;
  });

  // --- links --------------------------------------------------------------
  function safeURL(s) {
    try {
      const u = new URL(s);
      return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function wikiLink(ev, title) {
    const base = safeURL(ev.server_url);
    if (!base) return null;
    const u = new URL((ev.server_script_path || '/w') + '/index.php', base);
    u.searchParams.set('title', title);
    return u.href;
  }

  function setLink(a, href) {
    if (href) {
      a.href = href;
    } else {
      a.removeAttribute('href');
    }
  }

  const classNames = { ip: 'IP', temp: 'temporary', new: 'new', named: 'named' };

  // --- rendering ----------------------------------------------------------
  function fmtDelta(n) {
    return (n > 0 ? '+' : n < 0 ? '−' : '±') + Math.abs(n).toLocaleString();
  }

  function renderAlert(item) {
    const a = item.alert;
    const ev = a.event || {};
    const li = $('#t-alert').content.firstElementChild.cloneNode(true);
    li.dataset.seq = String(item.seq);
    const page = $('.page', li);
    page.textContent = ev.title || '(no title)';
    setLink(page, wikiLink(ev, ev.title || ''));
    setLink($('.diff', li), safeURL(ev.diff_url || ''));
    $('.diff', li).setAttribute('aria-label', 'diff of ' + (ev.title || 'the page'));
    const delta = (ev.new_size || 0) - (ev.old_size || 0);
    const d = $('.delta', li);
    d.textContent = fmtDelta(delta);
    d.classList.add(delta < 0 ? 'neg' : delta > 0 ? 'pos' : 'zero');
    d.title = 'size change in bytes';
    const sev = $('.sev', li);
    sev.textContent = a.severity || '';
    sev.classList.add('sev-' + (['info', 'low', 'medium', 'high', 'critical'].includes(a.severity) ? a.severity : 'unknown'));
    $('.score', li).textContent = 'score ' + (Number(a.score) || 0).toFixed(2);
    $('.rule', li).textContent = (a.rule && a.rule.id) || '';
    const t = $('.time', li);
    const when = new Date(item.time || a.detected_at);
    if (!isNaN(when)) {
      t.dateTime = when.toISOString();
      t.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
      t.title = when.toLocaleString();
    }
    const sum = $('.summary', li);
    if (ev.comment) {
      sum.textContent = ev.comment;
    } else {
      sum.textContent = 'no edit summary';
      sum.classList.add('none');
    }
    const reasons = $('.reasons', li);
    for (const r of a.reasons || []) {
      const x = document.createElement('li');
      x.textContent = r;
      reasons.appendChild(x);
    }
    const onIt = $('.on-it', li);
    const done = $('.done', li);
    onIt.setAttribute('aria-label', 'I’m on it: ' + (ev.title || 'this alert'));
    done.setAttribute('aria-label', 'Done: ' + (ev.title || 'this alert'));
    onIt.addEventListener('click', () => claim(item, 'on-it'));
    done.addEventListener('click', () => claim(item, 'done'));
    return li;
  }

  function groupFor(item) {
    const ev = item.alert.event || {};
    const key = (ev.wiki || '') + '\u0000' + (ev.user || '');
    const first = list.firstElementChild;
    if (first && first.dataset.key === key) return first;
    const g = $('#t-group').content.firstElementChild.cloneNode(true);
    g.dataset.key = key;
    $('.user', g).textContent = ev.user || '(hidden user)';
    const cls = $('.class', g);
    cls.textContent = classNames[item.user_class] || 'unknown';
    cls.classList.add('class-' + (item.user_class || 'unknown'));
    $('.wiki', g).textContent = ev.wiki || '';
    if (ev.user) {
      setLink($('.contribs', g), wikiLink(ev, 'Special:Contributions/' + ev.user));
      setLink($('.talk', g), wikiLink(ev, 'User talk:' + ev.user));
      $('.contribs', g).setAttribute('aria-label', 'contributions of ' + ev.user);
      $('.talk', g).setAttribute('aria-label', 'talk page of ' + ev.user);
    } else {
      $('.links', g).hidden = true;
    }
    list.prepend(g);
    return g;
  }

  function addAlert(item) {
    if (shown.has(item.seq)) return;
    const li = renderAlert(item);
    const g = groupFor(item);
    $('.items', g).prepend(li);
    shown.set(item.seq, { item, li });
    if (item.claim) showClaim(item.claim);
    if (item.retired) showRetired(item.retired);
    trim();
    $('#empty').hidden = shown.size > 0;
    if (live && !statusTimer) {
      // The status is a live region: at most one update every 2 s.
      statusTimer = setTimeout(() => { statusTimer = null; if (live) showLive(); }, 2000);
    }
  }

  function showLive() {
    setStatus('Live: ' + shown.size + ' alert' + (shown.size === 1 ? '' : 's') + ' shown', true);
  }

  function trim() {
    while (shown.size > MAX_SHOWN) {
      const g = list.lastElementChild;
      const items = $('.items', g);
      const li = items.lastElementChild;
      shown.delete(Number(li.dataset.seq));
      li.remove();
      if (!items.firstElementChild) g.remove();
    }
  }

  function stateLine(li) {
    const ret = li.dataset.retired;
    const cl = li.dataset.claim;
    const p = $('.state', li);
    p.textContent = [ret, cl].filter(Boolean).join(' · ');
  }

  function showClaim(c) {
    const s = shown.get(c.seq);
    if (!s || s.item.alert.id !== c.id) return;
    const li = s.li;
    li.classList.remove('claimed-on-it', 'claimed-done');
    if (c.state === 'on-it' || c.state === 'done') {
      li.classList.add('claimed-' + c.state);
      li.dataset.claim = (c.state === 'done' ? 'done by ' : 'on it: ') + c.name;
    } else {
      delete li.dataset.claim;
    }
    s.item.claim = c.state ? c : null;
    stateLine(li);
  }

  function showRetired(r) {
    const s = shown.get(r.seq);
    if (!s || s.item.alert.id !== r.id) return;
    s.li.classList.add('retired');
    s.li.dataset.retired = (r.reverted ? 'retired: reverted' : 'retired: page edited again') + (r.user ? ' by ' + r.user : '');
    stateLine(s.li);
  }

  // --- claims -------------------------------------------------------------
  async function claim(item, state) {
    let name = nameInput.value.trim();
    if (!name) {
      setStatus('Type your name (under “You”) to claim alerts.');
      nameInput.focus();
      return;
    }
    store.set('rcwatch.name', name);
    try {
      const resp = await fetch('/api/claims', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ seq: item.seq, id: item.alert.id, state, name }),
      });
      const body = await resp.json().catch(() => ({}));
      if (resp.ok) {
        showClaim(body);
      } else if (resp.status === 409 && body.claim) {
        showClaim(body.claim);
        setStatus('Someone else is on it: ' + body.claim.name);
      } else {
        setStatus('Claim refused: ' + (body.error || resp.status));
      }
    } catch (e) {
      setStatus('Claim failed: the feed is unreachable.');
    }
  }

  // --- stream -------------------------------------------------------------
  function setStatus(text, live) {
    status.textContent = text;
    status.classList.toggle('live', !!live);
  }

  function clearList() {
    list.replaceChildren();
    shown.clear();
    $('#empty').hidden = false;
  }

  function restart() {
    lastSeq = 0;
    clearList();
    connect();
  }

  function connect() {
    if (es) es.close();
    clearTimeout(retryTimer);
    const q = new URLSearchParams(location.search);
    const allowed = new URLSearchParams();
    for (const k of ['wiki', 'ns', 'rule', 'severity', 'score', 'user']) {
      for (const v of q.getAll(k)) allowed.append(k, v);
    }
    if (lastSeq) allowed.set('last_id', String(lastSeq));
    es = new EventSource('/api/alerts/stream?' + allowed.toString());
    live = false;
    setStatus('Connecting…');
    es.addEventListener('alert', (m) => {
      const item = JSON.parse(m.data);
      lastSeq = Math.max(lastSeq, item.seq);
      addAlert(item);
    });
    es.addEventListener('retire', (m) => showRetired(JSON.parse(m.data)));
    es.addEventListener('claim', (m) => showClaim(JSON.parse(m.data)));
    es.addEventListener('gap', () => setStatus('Showing the newest alerts only: older ones were left out.'));
    es.addEventListener('ready', (m) => {
      const r = JSON.parse(m.data);
      lastSeq = Math.max(lastSeq, r.last_seq || 0);
      retryMs = 1000;
      live = true;
      showLive();
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (busy server, bad filter): retry with a capped, jittered
        // backoff, resuming after the last alert seen.
        setStatus('Disconnected: retrying…');
        retryTimer = setTimeout(connect, retryMs * (0.5 + Math.random()));
        retryMs = Math.min(retryMs * 2, 30000);
      } else {
        live = false;
        setStatus('Reconnecting…');
      }
    };
  }

  // --- keyboard shortcuts (opt-in) ---------------------------------------
  function articles() {
    return Array.from(list.querySelectorAll('li.alert')).filter((li) => li.offsetParent !== null)
      .map((li) => $('article', li));
  }

  document.addEventListener('keydown', (ev) => {
    if (!shortcuts.checked || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const tag = (ev.target.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'select' || tag === 'textarea') return;
    const arts = articles();
    const cur = document.activeElement && document.activeElement.closest ? document.activeElement.closest('li.alert') : null;
    const i = cur ? arts.indexOf($('article', cur)) : -1;
    const at = cur ? shown.get(Number(cur.dataset.seq)) : null;
    switch (ev.key) {
      case 'j': if (arts.length) arts[Math.min(i + 1, arts.length - 1)].focus(); break;
      case 'k': if (arts.length) arts[Math.max(i - 1, 0)].focus(); break;
      case 'o': if (cur) { const a = $('.diff', cur); if (a.href) window.open(a.href, '_blank', 'noopener'); } break;
      case 'c': if (at) claim(at.item, 'on-it'); break;
      case 'd': if (at) claim(at.item, 'done'); break;
      case '/': form.elements.wiki.focus(); break;
      default: return;
    }
    ev.preventDefault();
  });

  filtersFromURL();
  connect();
})();
