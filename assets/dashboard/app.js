/* netlens dashboard: views of the history a netlens server holds.
 *
 * Vanilla JavaScript, no build step; charts by the vendored Apache ECharts (echarts.min.js).
 * The page talks only to its own origin: GET /api/views, /api/range, /api/panel, /api/status,
 * /api/events (server-sent events) and POST /api/sql, /api/export, /api/request with the CSRF
 * header. The HTTP contract is in docs/dashboard.md. Nothing here uses eval or inline code, so
 * the server's Content-Security-Policy (script-src 'self', style-src 'self') holds.
 *
 * In a static report (`netlens report`, a page with <script id="netlens-report">) the same code
 * draws the views from the rows the report carries, and asks no server for anything.
 */
(function () {
  'use strict';

  var CSRF = (document.querySelector('meta[name="netlens-csrf"]') || {}).content || '';
  var PALETTE = ['#5794f2', '#73bf69', '#f2cc0c', '#ff9830', '#f2495c', '#b877d9', '#37c4c8', '#ff7eb6',
    '#c0d84a', '#a68a64', '#8ab8ff', '#96d98d', '#ffb357', '#ca95e5'];
  /* The same thing has the same colour in every chart. */
  var SEMANTIC = {
    'Anomalous': '#f2495c', 'New Flow': '#ff9830', 'Segment Drift': '#f2cc0c', 'Trusted': '#73bf69',
    'high (60+)': '#f2495c', 'medium (30-59)': '#ff9830', 'low (<30)': '#73bf69',
    'anomaly': '#f2495c', 'normal': '#5794f2', 'noise': '#8e939b', 'other': '#8e939b', 'NULL': '#6b7078',
    'internal': '#5794f2', 'outbound': '#73bf69', 'inbound': '#ff9830', 'listen': '#b877d9', 'external': '#37c4c8',
    'tcp': '#5794f2', 'udp': '#37c4c8', 'icmp': '#ff9830',
    'ESTABLISHED': '#73bf69', 'LISTEN': '#5794f2', 'TIME_WAIT': '#f2cc0c', 'SYN_SENT': '#ff9830',
    'SYN_RECV': '#ff7eb6', 'CLOSE_WAIT': '#f2495c', 'FIN_WAIT1': '#b877d9', 'FIN_WAIT2': '#ca95e5',
    'LAST_ACK': '#a68a64', 'CLOSING': '#c0d84a', 'CLOSE': '#6b7078', 'UNCONN': '#8ab8ff', 'CONNECTED': '#37c4c8',
    'sent': '#5794f2', 'received': '#73bf69'
  };

  /* Colours for a list of names: the fixed ones first, then the palette in order. */
  function colorsFor(names) {
    var used = new Set();
    names.forEach(function (n) { if (SEMANTIC[n]) used.add(SEMANTIC[n]); });
    var free = PALETTE.filter(function (c) { return !used.has(c); });
    if (!free.length) free = PALETTE;
    var k = 0;
    return names.map(function (n) {
      if (SEMANTIC[n]) return SEMANTIC[n];
      var m = /^(cluster|segment) (\d+)/.exec(n);  // numbered groups keep their colour in every chart
      if (m) return PALETTE[Number(m[2]) % PALETTE.length];
      return free[k++ % free.length];
    });
  }
  var TIME_LABELS = {
    year: '{yyyy}', month: '{yyyy}-{MM}', day: '{MM}-{dd}', hour: '{HH}:{mm}', minute: '{HH}:{mm}',
    second: '{HH}:{mm}:{ss}', millisecond: '{HH}:{mm}:{ss}.{SSS}', none: '{yyyy}-{MM}-{dd} {HH}:{mm}'
  };
  var C = {
    text: '#c7cbd1', muted: '#8e939b', axis: '#3a4048', split: '#262a30', panel: '#181b1f',
    bad: '#f2495c', tooltip: '#22262c'
  };
  var ALL_SINCE = '1970-01-01T00:00:00';
  var ALL_UNTIL = '9999-12-31T23:59:59';
  var RANGES = { '15m': 15 * 60e3, '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };
  var RANGE_NAMES = { '15m': '15 min', '1h': '1 h', '24h': '24 h', '7d': '7 days' };
  var REFRESH_MIN_MS = 2000;
  var TABLE_PAGE = 200;
  var CHART_KINDS = ['bar', 'hbar', 'pie', 'line', 'area', 'heatmap', 'scatter', 'scatter3d', 'histogram'];
  var DEFAULT_SQL = 'SELECT process_name, count(*) AS connections, sum(bytes_sent) AS bytes_sent\n' +
    'FROM connections\nWHERE first_seen <= :until AND last_seen >= :since\nGROUP BY ALL\nORDER BY connections DESC\nLIMIT 20';

  var state = {
    views: [], byId: {}, range: null, rangeKey: null, custom: null,
    route: null, panels: [], gen: 0,
    lastRefresh: 0, refreshTimer: null, refreshing: false, pending: false,
    status: null, sse: 'off', lastEvent: null, updatedAt: null,
    report: null  // the bundle of a static report
  };

  /* ------------------------------------------------------------------ small helpers */

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === undefined || v === null || v === false) return;
        if (k === 'text') e.textContent = v;
        else if (k === 'class') e.className = v;
        else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : v);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }

  /* Text with `code` spans, escaped. */
  function richText(s) {
    return esc(s).replace(/`([^`]+)`/g, '<code>$1</code>');
  }

  /* Text for a canvas tooltip: braces would start ECharts rich-text markup. */
  function rt(s) { return String(s).replace(/[{}]/g, function (c) { return c === '{' ? '(' : ')'; }); }

  function truncate(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n - 1) + '\u2026' : s;
  }

  /* Keeps both ends ("10.0.0.1 -> 192.168...0.7"): pairs differ at the end as often as at the start. */
  function truncateMiddle(s, n) {
    s = String(s);
    if (s.length <= n) return s;
    var head = Math.ceil((n - 1) / 2), tail = n - 1 - head;
    return s.slice(0, head) + '\u2026' + s.slice(s.length - tail);
  }

  var TS_RE = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?$/;

  /* "YYYY-MM-DDTHH:MM:SS[.ffffff]" (UTC) to epoch milliseconds. */
  function tsToMs(s) {
    var m = TS_RE.exec(s);
    if (!m) {
      if (/^\d{4}-\d{2}-\d{2}$/.test(s)) return Date.parse(s + 'T00:00:00Z');
      return NaN;
    }
    return Date.parse(m[1] + 'T' + m[2] + (m[3] ? m[3].slice(0, 4) : '') + 'Z');
  }

  function msToIso(ms) { return new Date(ms).toISOString().slice(0, 19); }

  function fmtTs(s) {
    var m = TS_RE.exec(s);
    return m ? m[1] + ' ' + m[2] + (m[3] ? m[3].slice(0, 4) : '') : String(s);
  }

  function isTimeType(t) { return /^(TIMESTAMP|DATE)/i.test(t || ''); }
  function isNumType(t) { return /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|REAL|DECIMAL|NUMERIC)/i.test(t || ''); }

  function colIsTime(data, i) {
    if (isTimeType(data.types[i])) return true;
    if (data.types[i] && data.types[i] !== '?') return false;
    return data.rows.length > 0 && data.rows.every(function (r) { return r[i] === null || (typeof r[i] === 'string' && TS_RE.test(r[i])); });
  }

  function colIsNum(data, i) {
    if (isNumType(data.types[i])) return true;
    if (data.types[i] && data.types[i] !== '?') return false;
    return data.rows.length > 0 && data.rows.every(function (r) { return r[i] === null || typeof r[i] === 'number'; });
  }

  function num(v) {
    if (v === null || v === undefined) return null;
    if (typeof v === 'number') return v;
    if (typeof v === 'boolean') return v ? 1 : 0;
    var n = Number(v);
    return isNaN(n) ? null : n;
  }

  function trimFloat(v) {
    if (!isFinite(v)) return String(v);
    var a = Math.abs(v);
    var d = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : a >= 0.01 ? 3 : 4;
    return String(+v.toFixed(d));
  }

  function fmtInt(v) { return Math.round(v).toLocaleString('en-US'); }

  function fmtNum(v) {
    if (v === null || v === undefined) return '\u2014';
    if (typeof v !== 'number') return String(v);
    return Number.isInteger(v) ? fmtInt(v) : trimFloat(v);
  }

  function fmtCompact(v) {
    if (v === null || v === undefined || typeof v !== 'number') return v === null || v === undefined ? '' : String(v);
    var a = Math.abs(v);
    if (a >= 1e12) return trimFloat(v / 1e12) + 'T';
    if (a >= 1e9) return trimFloat(v / 1e9) + 'G';
    if (a >= 1e6) return trimFloat(v / 1e6) + 'M';
    if (a >= 1e4) return trimFloat(v / 1e3) + 'k';
    return trimFloat(v);
  }

  function fmtBytes(v) {
    if (v === null || v === undefined || isNaN(v)) return '\u2014';
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    var x = Math.abs(v), i = 0;
    while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    var s = i === 0 ? String(Math.round(x)) : x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0);
    return (v < 0 ? '-' : '') + s + ' ' + units[i];
  }

  function fmtSeconds(v) {
    if (v === null || v === undefined || isNaN(v)) return '\u2014';
    var a = Math.abs(v);
    if (a === 0) return '0 s';
    if (a < 1) return trimFloat(v * 1000) + ' ms';
    if (a < 120) return trimFloat(v) + ' s';
    if (a < 7200) return trimFloat(v / 60) + ' min';
    if (a < 172800) return trimFloat(v / 3600) + ' h';
    return trimFloat(v / 86400) + ' d';
  }

  /* Formatter of a value axis or tooltip for a panel's unit. */
  function unitFormatter(unit, compact) {
    switch (unit) {
      case 'bytes': return fmtBytes;
      case 'bytes/s': return function (v) { return fmtBytes(v) + '/s'; };
      case 'percent': return function (v) { return v === null || v === undefined ? '\u2014' : trimFloat(v) + ' %'; };
      case 's': return fmtSeconds;
      default: return compact ? fmtCompact : fmtNum;
    }
  }

  /* Unit of a result column, from its name (tables and KPI tiles). */
  function columnUnit(name) {
    if (/score|share|ratio|per_packet|per_s|_count$/i.test(name)) return null;
    if (/(^|[_ ])bytes($|[_ ])|(^|_)rss($|_)/i.test(name)) return 'bytes';
    return null;
  }

  /* A message in the corner for a few seconds; several stack upwards. */
  function toast(text, bad) {
    var box = $('toasts');
    if (!box) {
      box = el('div', { id: 'toasts', class: 'toasts' });
      document.body.appendChild(box);
    }
    var t = el('div', { class: 'toast' + (bad ? ' bad' : ''), role: bad ? 'alert' : 'status' }, text);
    box.appendChild(t);
    setTimeout(function () { t.remove(); }, bad ? 9000 : 5000);
  }

  /* The server's substitution of :since and :until, done here for the SQL page and exports. */
  /* `:since`/`:until` as literals; `:rolled_from`/`:rolled_to` (the part of a range of days read
   * from the hourly rollups) as the server chose them for the panel's rows (`rolled`), else the
   * range's start: raw rows only. `:row_limit` (a panel shows the top rows) as NULL: every row. */
  function substitute(sql, r, rolled) {
    var lit = function (iso) { return "TIMESTAMP '" + iso.replace('T', ' ') + "'"; };
    return sql.replace(/(?<![:\w]):row_limit\b/g, 'NULL').replace(/(?<![:\w]):rolled_from\b/g, lit(rolled ? rolled.from : r.since))
      .replace(/(?<![:\w]):rolled_to\b/g, lit(rolled ? rolled.to : r.since))
      .replace(/(?<![:\w]):since\b/g, lit(r.since)).replace(/(?<![:\w]):until\b/g, lit(r.until));
  }

  /* ------------------------------------------------------------------ HTTP */

  function ApiError(message, status) { this.message = message; this.status = status; }
  ApiError.prototype = Object.create(Error.prototype);

  function api(path, opts) {
    opts = opts || {};
    var init = { credentials: 'same-origin', headers: { 'Accept': 'application/json' } };
    if (opts.body !== undefined) {
      init.method = 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.headers['X-Netlens-CSRF'] = CSRF;
      init.body = JSON.stringify(opts.body);
    }
    return fetch(path, init).then(function (r) {
      if (r.status === 401) {
        showUnauthorized();
        throw new ApiError('the access token is missing or wrong', 401);
      }
      if (opts.raw && r.ok) return r;
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!r.ok) throw new ApiError((data && data.error) || text || (r.status + ' ' + r.statusText), r.status);
        return data;
      });
    });
  }

  function showUnauthorized() {
    if (document.body.dataset.fatal) return;
    document.body.dataset.fatal = '1';
    document.body.innerHTML = '';
    document.body.appendChild(el('div', { class: 'fatal' },
      el('h1', { text: 'netlens: access token needed' }),
      el('p', { text: 'This dashboard only answers with the access token. Open the URL that netlens serve printed when it started (it ends in ?token=...), or ask whoever runs the server for it.' })));
  }

  function download(blob, name) {
    var url = URL.createObjectURL(blob);
    var a = el('a', { href: url, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
  }

  function exportSql(sql, format, button) {
    if (button) button.disabled = true;
    return api('/api/export', { body: { sql: sql, format: format }, raw: true }).then(function (r) {
      var cd = r.headers.get('Content-Disposition') || '';
      var m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
      return r.blob().then(function (b) { download(b, m ? decodeURIComponent(m[1]) : 'netlens-export.' + format); });
    }).catch(function (e) {
      if (e.status !== 401) toast('export failed: ' + e.message, true);
    }).then(function () { if (button) button.disabled = false; });
  }

  function toCsv(columns, rows) {
    var q = function (v) {
      if (v === null || v === undefined) return '';
      var s = typeof v === 'object' ? JSON.stringify(v) : String(v);
      return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
    };
    var lines = [columns.map(q).join(',')];
    rows.forEach(function (r) { lines.push(r.map(q).join(',')); });
    return lines.join('\r\n') + '\r\n';
  }

  function stamp() { return new Date().toISOString().slice(0, 19).replace(/[-:]/g, '') + 'Z'; }

  /* ------------------------------------------------------------------ time range */

  function anchorMs() {
    var r = state.range || {};
    if (r.live || !r.last) return Date.now();
    return tsToMs(r.last);
  }

  function currentRange() {
    var key = state.rangeKey;
    if (key === 'all') return { since: ALL_SINCE, until: ALL_UNTIL };
    if (key === 'custom' && state.custom) return { since: state.custom.since, until: state.custom.until };
    var dur = RANGES[key] || RANGES['1h'];
    var a = anchorMs();
    return { since: msToIso(a - dur), until: msToIso(Math.ceil(a / 1000) * 1000) };
  }

  function rangeHint() {
    var r = state.range || {};
    var key = state.rangeKey;
    var live = !!r.live;
    var refresh = live ? ' Panels refresh on each new snapshot (server-sent events, at most every 2 s).'
      : ' Capture is not running, so nothing refreshes by itself.';
    var cur = currentRange();
    var span = fmtTs(cur.since) + ' \u2013 ' + fmtTs(cur.until) + ' UTC';
    if (key === 'all') {
      return 'All stored history' + (r.first ? ' (snapshots ' + fmtTs(r.first) + ' \u2013 ' + fmtTs(r.last) + ' UTC; imported captures keep their own times).' : '.') + refresh;
    }
    if (key === 'custom') return 'From ' + span + '.' + refresh;
    var name = RANGE_NAMES[key];
    if (live) return 'Last ' + name + ', counted back from now: ' + span + '.' + refresh;
    if (r.last) return 'Last ' + name + ', counted back from the newest stored snapshot: ' + span + '.' + refresh;
    return 'Last ' + name + ', counted back from now (' + span + '): the database holds no snapshots; imported captures keep their own times, so choose All for them.';
  }

  function defaultRangeKey() {
    var r = state.range || {};
    if (r.live) return '1h';
    return r.last ? '24h' : 'all';
  }

  function initRange() {
    var sel = $('range-select');
    var saved = null;
    try { saved = JSON.parse(sessionStorage.getItem('netlens.range') || 'null'); } catch (e) { saved = null; }
    if (saved && (RANGES[saved.key] || saved.key === 'all' || (saved.key === 'custom' && saved.custom))) {
      state.rangeKey = saved.key;
      state.custom = saved.custom || null;
    } else {
      state.rangeKey = defaultRangeKey();
    }
    sel.value = state.rangeKey;
    $('range-custom').hidden = state.rangeKey !== 'custom';
    if (state.custom) {
      $('range-from').value = state.custom.since;
      $('range-to').value = state.custom.until;
    }
    sel.addEventListener('change', function () {
      if (sel.value === 'custom') {
        $('range-custom').hidden = false;
        if (!$('range-from').value) {
          var cur = currentRange();
          var s = cur.since, u = cur.until;
          if (state.rangeKey === 'all') {
            var a = anchorMs();
            s = msToIso(a - RANGES['24h']); u = msToIso(a);
          }
          $('range-from').value = s;
          $('range-to').value = u;
        }
        return;
      }
      $('range-custom').hidden = true;
      setRange(sel.value, null);
    });
    $('range-apply').addEventListener('click', function () {
      var f = normalizeLocal($('range-from').value), t = normalizeLocal($('range-to').value);
      if (!f || !t) { toast('enter both times (UTC)', true); return; }
      if (f > t) { toast('the start is after the end', true); return; }
      setRange('custom', { since: f, until: t });
    });
  }

  function normalizeLocal(v) {
    if (!v) return null;
    return v.length === 16 ? v + ':00' : v.slice(0, 19);
  }

  function setRange(key, custom) {
    state.rangeKey = key;
    state.custom = custom;
    try { sessionStorage.setItem('netlens.range', JSON.stringify({ key: key, custom: custom })); } catch (e) { /* private mode */ }
    refreshAll();
  }

  /* ------------------------------------------------------------------ status strip */

  function loadStatus() {
    return api('/api/status').then(function (s) {
      state.status = s;
      renderStatus();
    }).catch(function (e) {
      if (e.status === 401) return;
      state.status = null;
      renderStatus(e.message);
    });
  }

  function renderStatus(error) {
    var s = state.status;
    var r = state.range || {};
    var dot = $('status-dot'), text = $('status-text');
    if (!dot) return;
    var parts = [];
    var live = !!(s && s.capture && s.capture.running) || !!r.live;
    dot.className = 'dot' + (live ? ' live' : '') + (s && s.last_error ? ' error' : '');
    dot.title = live ? 'capture running' : 'not capturing';
    if (error) parts.push('<span class="err">status unavailable: ' + esc(error) + '</span>');
    if (s && s.capture) {
      var c = s.capture;
      parts.push(c.running ? '<b>live</b> every ' + esc(fmtSeconds(c.interval_s)) : 'capture <b>stopped</b>');
      parts.push('<b>' + esc(fmtInt(c.snapshots || 0)) + '</b> snapshots stored');
      var last = state.lastEvent && state.lastEvent.at ? state.lastEvent.at : c.last_snapshot_at;
      if (last) parts.push('last ' + esc(fmtTs(String(last).replace(/Z$|[+-]00:00$/, ''))) + ' UTC');
    } else if (s) {
      parts.push('not capturing');
      parts.push(r.last ? 'newest snapshot ' + esc(fmtTs(r.last)) + ' UTC' : 'no snapshots');
    }
    if (s && s.database) parts.push(esc(s.database.split('/').pop()));
    if (state.sse === 'error') parts.push('<span class="err">event stream lost (retrying)</span>');
    if (s && s.last_error) parts.push('<span class="err">last error: ' + esc(s.last_error) + '</span>');
    if (state.updatedAt) parts.push('updated ' + esc(state.updatedAt));
    text.innerHTML = parts.join(' &middot; ');
    text.title = text.textContent;
  }

  /* ------------------------------------------------------------------ server-sent events */

  function connectEvents() {
    if (!window.EventSource) return;
    var es = new EventSource('/api/events');
    es.onopen = function () { state.sse = 'open'; renderStatus(); };
    es.onerror = function () {
      state.sse = 'error';
      renderStatus();
      if (es.readyState === EventSource.CLOSED) setTimeout(connectEvents, 10000);
    };
    es.addEventListener('snapshot', function (ev) {
      try { state.lastEvent = JSON.parse(ev.data); } catch (e) { /* keep the old one */ }
      scheduleRefresh();
    });
    es.addEventListener('job', function (ev) {
      var d = {};
      try { d = JSON.parse(ev.data); } catch (e) { d = {}; }
      toast((d.job || 'job') + ': ' + (d.result || 'done'));
      scheduleRefresh();
    });
  }

  function scheduleRefresh() {
    if (state.refreshTimer) return;
    var wait = Math.max(250, state.lastRefresh + REFRESH_MIN_MS - Date.now());
    state.refreshTimer = setTimeout(function () {
      state.refreshTimer = null;
      if (document.hidden) { state.pending = true; return; }
      if (state.refreshing) { state.pending = true; return; }
      refreshAll(true);
    }, wait);
  }

  document.addEventListener('visibilitychange', function () {
    if (!document.hidden && state.pending && !state.refreshing) {
      state.pending = false;
      scheduleRefresh();
    }
  });

  /* ------------------------------------------------------------------ navigation */

  function parseHash() {
    var h = location.hash.replace(/^#\/?/, '');
    var i = h.indexOf('?');
    var path = i < 0 ? h : h.slice(0, i);
    var params = new URLSearchParams(i < 0 ? '' : h.slice(i + 1));
    return { id: decodeURIComponent(path || ''), params: params };
  }

  function renderNav() {
    var nav = $('nav');
    nav.innerHTML = '';
    state.views.forEach(function (v) {
      nav.appendChild(el('a', { href: '#/' + v.id, 'data-id': v.id, text: v.title }));
    });
    if (!state.report) {
      nav.appendChild(el('div', { class: 'sep' }));
      nav.appendChild(el('a', { href: '#/sql', 'data-id': 'sql', text: 'SQL' }));
    }
    nav.addEventListener('click', function (e) {
      if (e.target.tagName === 'A') closeNav();
    });
    $('nav-toggle').addEventListener('click', function (e) {
      e.stopPropagation();
      var open = !nav.classList.contains('open');
      nav.classList.toggle('open', open);
      $('nav-toggle').setAttribute('aria-expanded', String(open));
    });
    document.addEventListener('click', function (e) {
      if (nav.classList.contains('open') && !nav.contains(e.target)) closeNav();
    });
  }

  function closeNav() {
    $('nav').classList.remove('open');
    $('nav-toggle').setAttribute('aria-expanded', 'false');
  }

  function markNav(id) {
    Array.prototype.forEach.call($('nav').querySelectorAll('a'), function (a) {
      a.classList.toggle('active', a.getAttribute('data-id') === id);
    });
  }

  function route() {
    var h = parseHash();
    if (h.id === 'sql' && !state.report) { showSql(h.params.get('q')); return; }
    if (!state.byId[h.id]) {
      var first = state.views.length ? state.views[0].id : 'sql';
      location.replace('#/' + first);
      return;
    }
    showView(state.byId[h.id]);
  }

  function clearView() {
    state.gen++;
    state.panels.forEach(disposePanel);
    state.panels = [];
    $('grid').innerHTML = '';
    $('actions').innerHTML = '';
    $('action-output').innerHTML = '';
    window.scrollTo(0, 0);
  }

  function disposePanel(p) {
    if (p.s3 && p.s3.raf) cancelAnimationFrame(p.s3.raf);
    p.s3 = null;
    if (p.ro) p.ro.disconnect();
    if (p.chart) p.chart.dispose();
    p.ro = null;
    p.chart = null;
  }

  /* ------------------------------------------------------------------ views and panel cards */

  function showView(view) {
    clearView();
    state.route = view.id;
    markNav(view.id);
    document.title = view.title + ' \u00b7 netlens';
    $('view-title').textContent = view.title;
    $('view-desc').textContent = view.description || '';
    $('range-hint').textContent = state.report ? reportHint() : rangeHint();
    if (!state.report) renderActions(view);
    var grid = $('grid');
    view.panels.forEach(function (def) {
      var p = makeCard(view, def);
      state.panels.push(p);
      grid.appendChild(p.card);
    });
    loadPanels(state.gen);
  }

  function makeCard(view, def) {
    var p = { view: view, def: def, chart: null, ro: null, data: null, table: null };
    var tools = el('div', { class: 'tools' });
    var sqlBtn = el('button', { type: 'button', text: 'SQL', title: 'Show the query' });
    tools.appendChild(sqlBtn);
    if (!state.report) tools.appendChild(el('a', {
      href: '#/sql?q=' + encodeURIComponent(def.sql), text: 'Open in SQL page', class: 'open-sql',
      title: 'Edit and run this query on the SQL page (:since and :until stay the chosen range)'
    }));
    if (def.kind === 'table') {
      tools.appendChild(el('button', {
        type: 'button', text: 'CSV', title: 'Download the rows shown (filtered, sorted) as CSV',
        onclick: function () { downloadTableCsv(p); }
      }));
    }
    if (def.export && !state.report) {
      tools.appendChild(el('button', {
        type: 'button', text: 'Export CSV', title: 'The whole result as CSV, from the server (no row limit)',
        onclick: function (e) { exportSql(substitute(def.sql, currentRange(), p.data && p.data.rolled), 'csv', e.target); }
      }));
      tools.appendChild(el('button', {
        type: 'button', text: 'Export Parquet', title: 'The whole result as Parquet, from the server (no row limit)',
        onclick: function (e) { exportSql(substitute(def.sql, currentRange(), p.data && p.data.rolled), 'parquet', e.target); }
      }));
    }
    var pre = el('pre', { class: 'sql', hidden: true, text: def.sql });
    sqlBtn.addEventListener('click', function () {
      pre.hidden = !pre.hidden;
      sqlBtn.classList.toggle('on', !pre.hidden);
    });
    p.meta = el('div', { class: 'card-meta' });
    p.body = el('div', { class: 'card-body' });
    p.card = el('section', { class: 'card w' + (def.width || 1), 'data-panel': def.id, 'data-kind': def.kind },
      el('div', { class: 'card-head' }, el('h2', { text: def.title, title: def.title }), tools),
      p.meta,
      def.note ? el('p', { class: 'card-note', text: def.note }) : null,
      pre,
      p.body);
    p.body.appendChild(el('div', { class: 'empty' }, el('span', { text: 'Loading\u2026' })));
    return p;
  }

  /* Runs every panel of the view, four at a time, in page order. */
  function loadPanels(gen) {
    var queue = state.panels.slice();
    var running = 0;
    // One range for every panel of a refresh: live, the range ends at the clock, and panels asked
    // a second apart would each ask for their own range (and build their own shared read).
    var range = currentRange();
    return new Promise(function (resolve) {
      if (!queue.length) { resolve(); return; }
      var done = 0, total = queue.length;
      function next() {
        while (running < 4 && queue.length) {
          var p = queue.shift();
          running++;
          loadPanel(p, gen, range).then(function () {
            running--;
            done++;
            if (done === total) resolve();
            else next();
          });
        }
      }
      next();
    });
  }

  function loadPanel(p, gen, range) {
    if (state.report) {
      var result = state.report.results[p.view.id + '/' + p.def.id];
      if (!result) renderError(p, 'this report has no rows for this panel');
      else if (result.error) renderError(p, result.error);
      else {
        try { renderPanel(p, result); } catch (e) { renderError(p, 'could not draw this result: ' + e.message); }
      }
      return Promise.resolve();
    }
    var r = range || currentRange();
    var q = new URLSearchParams({ view: p.view.id, panel: p.def.id, since: r.since, until: r.until });
    var spin = el('span', { class: 'loading', text: 'loading\u2026' });
    p.body.appendChild(spin);
    return api('/api/panel?' + q.toString()).then(function (data) {
      spin.remove();
      if (gen !== state.gen) return;
      try {
        renderPanel(p, data);
      } catch (e) {
        renderError(p, 'could not draw this result: ' + e.message);
        if (window.console) console.warn(e);
      }
    }, function (e) {
      spin.remove();
      if (gen !== state.gen) return;
      p.data = null;
      p.meta.textContent = '';
      renderError(p, e.message);
    });
  }

  function resetBody(p) {
    disposePanel(p);
    p.body.innerHTML = '';
  }

  function renderError(p, message) {
    resetBody(p);
    p.body.appendChild(el('div', { class: 'error-box', text: message }));
  }

  function renderMeta(p, data) {
    var n = data.rows.length;
    var ms = typeof data.elapsed_ms === 'number' ? ' \u00b7 ' + Math.round(data.elapsed_ms) + ' ms' : '';
    p.meta.innerHTML = esc(fmtInt(n) + (n === 1 ? ' row' : ' rows') + ms) +
      (data.truncated ? ' \u00b7 <span class="warn">only the first ' + fmtInt(n) + ' rows (the server\u2019s limit)' +
        (p.def.export ? '; Export gives them all' : '') + '</span>' : '') +
      (data.rolled ? ' \u00b7 <span class="rolled">' + esc(rolledText(data.rolled)) + '</span>' : '') +
      (data.sampled ? ' \u00b7 <span class="warn">a sample: ' + esc(fmtInt(data.sampled.shown) + ' of ' +
        fmtInt(data.sampled.of) + ' ' + data.sampled.what) + '</span>' : '');
  }

  /* What of the range a panel drew from the rollups (ranges over a day read them). */
  function rolledText(r) {
    var width = r.bucket_s === 3600 ? 'hourly' : (r.bucket_s % 3600 === 0 ? (r.bucket_s / 3600) + '-hour' : (r.bucket_s / 60) + '-minute');
    return 'drawn from ' + width + ' rollups for ' + fmtTs(r.from) + ' \u2013 ' + fmtTs(r.to) + ' UTC (' +
      fmtInt(r.buckets) + (r.buckets === 1 ? ' bucket' : ' buckets') + '), raw rows for the rest';
  }

  function renderEmpty(p) {
    resetBody(p);
    var box = el('div', { class: 'empty' }, el('strong', { text: 'No rows in this range.' }));
    if (p.def.empty) {
      var s = el('span');
      s.innerHTML = richText(p.def.empty);
      box.appendChild(s);
    }
    p.body.appendChild(box);
  }

  function renderPanel(p, data) {
    p.data = data;
    renderMeta(p, data);
    var kind = p.def.kind;
    if (!data.rows.length) { renderEmpty(p); return; }
    if (kind === 'kpi') { resetBody(p); p.body.appendChild(kpiTiles(data)); return; }
    if (kind === 'table') { renderTable(p, data); return; }
    drawChart(p, kind, data, p.def);
  }

  function drawChart(p, kind, data, def) {
    var width = (p.body.clientWidth || 400) - 20;
    if (kind === 'scatter3d') { drawScatter3d(p, data, def || {}, width); return; }
    var option = chartOption(kind, data, def || {}, width);
    if (typeof option === 'string') {
      resetBody(p);
      p.body.appendChild(el('div', { class: 'empty' }, el('strong', { text: 'Cannot draw this as ' + kind + '.' }), el('span', { text: option })));
      return;
    }
    if (!p.chart) {
      resetBody(p);
      var div = el('div', { class: 'chart' });
      if (def && def.height) div.style.height = def.height + 'px';
      p.body.appendChild(div);
      p.chart = echarts.init(div, null, { renderer: 'canvas' });
      p.ro = new ResizeObserver(function () { if (p.chart) p.chart.resize(); });
      p.ro.observe(div);
    }
    p.chart.setOption(option, true);
  }

  /* ------------------------------------------------------------------ 3D scatter (no WebGL) */

  /* echarts-gl compiles shaders with new Function, which the CSP (script-src 'self') refuses, so
   * the 3D plot is plain ECharts: each point is rotated (yaw about the vertical z axis, then
   * pitch) and projected here to 2D, drawn as scatter series on hidden, equally scaled axes.
   * Depth cue: the points fall into DEPTH_LAYERS layers by depth, drawn back to front, the far
   * ones smaller and fainter. A drag (mouse, pen or finger) or the arrow keys rotate. */
  var DEPTH_LAYERS = 6;

  /* Points of x, y, z[, series[, label]] centred and scaled so that the box holding 96 % of the
   * points on each axis is [-1, 1]: one scale for all three axes unless their spreads
   * differ by more than 20 times. The few points further out than the bulk's radius (95 %) are
   * drawn pulled in towards it (the same direction, at most 1.3 times that radius), so an outlier
   * neither squeezes the cloud into a dot nor vanishes; the tooltip gives its values. Or a message. */
  function scatter3dModel(data) {
    var n = data.columns.length;
    if (n < 3 || n > 5) return 'a 3D scatter plot reads x, y, z[, series[, label]]';
    for (var c = 0; c < 3; c++) if (!colIsNum(data, c)) return 'x, y and z (the first three columns) must be numbers';
    var rows = data.rows.filter(function (r) { return num(r[0]) !== null && num(r[1]) !== null && num(r[2]) !== null; });
    if (!rows.length) return 'no row has numbers in all of x, y and z';
    var quantile = function (xs, f) {
      xs = xs.slice().sort(function (a, b) { return a - b; });
      return xs[Math.min(xs.length - 1, Math.floor(f * xs.length))];
    };
    // the middle of the box that holds 96 % of the points on each axis, and its half-width
    var mid = [], dev = [];
    [0, 1, 2].forEach(function (c) {
      var v = rows.map(function (r) { return num(r[c]); });
      var lo = quantile(v, 0.02), hi = quantile(v, 0.98);
      mid.push((lo + hi) / 2);
      dev.push((hi - lo) / 2 || (Math.max.apply(null, v) - Math.min.apply(null, v)) / 2 || 1);
    });
    var big = Math.max.apply(null, dev);
    var iso = big / Math.min.apply(null, dev) <= 20;
    var scale = dev.map(function (d) { return iso ? big : d; });
    var pts = rows.map(function (r) {
      var q = [0, 1, 2].map(function (c) { return (num(r[c]) - mid[c]) / scale[c]; });
      return { q: q, r: Math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2]), row: r };
    });
    var bulk = quantile(pts.map(function (p) { return p.r; }), 0.95) || 1;
    var groups = new Map();
    var radius = 0;
    pts.forEach(function (p) {
      var r = p.row;
      if (p.r > bulk) {
        var k = (bulk + 0.3 * bulk * (1 - bulk / p.r)) / p.r;
        p.q = p.q.map(function (v) { return v * k; });
      }
      radius = Math.max(radius, Math.min(p.r, 1.3 * bulk));
      var name = n >= 4 ? (r[3] === null ? 'NULL' : String(r[3])) : 'points';
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push({ q: p.q, raw: [r[0], r[1], r[2]], label: n >= 5 ? r[4] : null });
    });
    var axisLen = [bulk, bulk, bulk];
    return {
      names: Array.from(groups.keys()).sort(compareValues), groups: groups, total: rows.length, radius: radius || 1,
      axisLen: axisLen, columns: data.columns.slice(0, 3), withSeries: n >= 4
    };
  }

  /* Screen x, screen y (up) and depth (larger is further away) of a point. */
  function project3d(q, yaw, pitch) {
    var cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
    var x1 = q[0] * cy - q[1] * sy, y1 = q[0] * sy + q[1] * cy;
    return [x1, q[2] * cp + y1 * sp, y1 * cp - q[2] * sp];
  }

  /* The parts of the option that change with the rotation and the chart's size. */
  function scatter3dParts(p) {
    var s = p.s3, m = s.model;
    var yaw = s.yaw * Math.PI / 180, pitch = s.pitch * Math.PI / 180;
    // equal units across and up: the plot area's shorter side spans the cloud's bounding sphere
    var w = Math.max(40, p.chart.getWidth() - 8), h = Math.max(40, p.chart.getHeight() - s.top - 4);
    var u = 2.1 * m.radius / Math.min(w, h);
    var axis = function (half) { return { type: 'value', show: false, min: -half, max: half, scale: false }; };
    var colors = colorsFor(m.names);
    var base = m.total > 1500 ? 4.5 : m.total > 300 ? 6.5 : 8.5;
    var layers = [];
    for (var k = 0; k < DEPTH_LAYERS; k++) layers.push(m.names.map(function () { return []; }));
    m.names.forEach(function (name, gi) {
      m.groups.get(name).forEach(function (pt) {
        var v = project3d(pt.q, yaw, pitch);
        var near = 0.5 - v[2] / (2 * m.radius);  // 0 at the back of the sphere, 1 at the front
        var k = Math.max(0, Math.min(DEPTH_LAYERS - 1, Math.floor(near * DEPTH_LAYERS)));
        layers[k][gi].push([v[0], v[1], pt.raw[0], pt.raw[1], pt.raw[2], pt.label, v[2]]);
      });
    });
    var series = [];
    // the axes, from the centre, under the points
    var ends = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
    ends.forEach(function (e, c) {
      var v = project3d(e.map(function (x) { return x * m.axisLen[c]; }), yaw, pitch);
      series.push({
        name: m.columns[c], type: 'line', data: [[0, 0], [v[0], v[1]]], symbol: 'none', silent: true,
        lineStyle: { color: C.muted, width: 1.2, opacity: 0.9 }, tooltip: { show: false }, z: 1,
        endLabel: { show: true, formatter: m.columns[c], color: C.text, fontSize: 11, distance: 4 }
      });
    });
    layers.forEach(function (byGroup, k) {
      var t = k / (DEPTH_LAYERS - 1);
      byGroup.forEach(function (pts, gi) {
        pts.sort(function (a, b) { return b[6] - a[6]; });
        series.push({
          name: m.names[gi], type: 'scatter', data: pts, symbolSize: +(base * (0.55 + 0.7 * t)).toFixed(2),
          itemStyle: { color: colors[gi], opacity: +(0.28 + 0.67 * t).toFixed(2) }, z: 2
        });
      });
    });
    return { xAxis: axis(u * w / 2), yAxis: axis(u * h / 2), series: series };
  }

  function scatter3dOption(p, def, width) {
    var m = p.s3.model;
    var o = baseOption();
    var legend = m.withSeries && (m.names.length > 1 || m.total >= 3);
    p.s3.top = legend ? 30 : 8;
    o.grid = { left: 4, right: 4, top: p.s3.top, bottom: 4, containLabel: false };
    if (legend) {
      o.legend = legendOption(m.names, false, width);
      o.legend.itemStyle = { opacity: 1 };  // not the faint far layer's
    }
    var cols = m.columns;
    o.tooltip.trigger = 'item';
    o.tooltip.formatter = function (q) {
      var v = q.value;
      var head = v[5] !== null && v[5] !== undefined ? rt(v[5]) : rt(q.seriesName);
      return q.marker + head + (v[5] !== null && v[5] !== undefined && m.withSeries ? '\n' + rt(q.seriesName) : '') +
        '\n' + rt(cols[0]) + ': ' + rt(fmtNum(num(v[2]))) + '\n' + rt(cols[1]) + ': ' + rt(fmtNum(num(v[3]))) +
        '\n' + rt(cols[2]) + ': ' + rt(fmtNum(num(v[4])));
    };
    return Object.assign(o, scatter3dParts(p));
  }

  /* Redraws the rotated points on the next frame (one setOption per frame, however many moves). */
  function rotate3d(p, dYaw, dPitch) {
    if (!p.s3) return;
    p.s3.yaw = ((p.s3.yaw + dYaw) % 360 + 360) % 360;
    p.s3.pitch = Math.max(-89, Math.min(89, p.s3.pitch + dPitch));
    if (p.s3.raf) return;
    p.s3.raf = requestAnimationFrame(function () {
      if (!p.s3) return;
      p.s3.raf = 0;
      if (p.chart) p.chart.setOption(scatter3dParts(p));
    });
  }

  function drawScatter3d(p, data, def, width) {
    var model = scatter3dModel(data);
    if (typeof model === 'string') {
      resetBody(p);
      p.body.appendChild(el('div', { class: 'empty' }, el('strong', { text: 'Cannot draw this as scatter3d.' }), el('span', { text: model })));
      return;
    }
    var old = p.chart ? p.s3 : null;  // a redraw of the same chart keeps its rotation
    if (!p.chart) resetBody(p);
    p.s3 = { model: model, yaw: old ? old.yaw : 35, pitch: old ? old.pitch : 20, raf: old ? old.raf : 0, top: 8 };
    if (!p.chart) {
      var div = el('div', {
        class: 'chart chart3d', tabindex: '0',
        'aria-label': '3D scatter plot of ' + model.columns.join(', ') + ': drag or use the arrow keys to rotate'
      });
      if (def && def.height) div.style.height = def.height + 'px';
      p.body.appendChild(div);
      p.body.appendChild(el('div', { class: 'chart-hint', text: 'drag to rotate' }));
      p.chart = echarts.init(div, null, { renderer: 'canvas' });
      p.ro = new ResizeObserver(function () {
        if (!p.chart) return;
        p.chart.resize();
        if (p.s3) p.chart.setOption(scatter3dParts(p));
      });
      p.ro.observe(div);
      var drag = null;
      div.addEventListener('pointerdown', function (e) {
        if (e.pointerType === 'mouse' && e.button !== 0) return;
        drag = { id: e.pointerId, x: e.clientX, y: e.clientY };
        try { div.setPointerCapture(e.pointerId); } catch (err) { /* the pointer is gone */ }
        div.classList.add('dragging');
      });
      div.addEventListener('pointermove', function (e) {
        if (!drag || e.pointerId !== drag.id) return;
        var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        drag.x = e.clientX; drag.y = e.clientY;
        if (!dx && !dy) return;
        if (p.chart) p.chart.dispatchAction({ type: 'hideTip' });
        rotate3d(p, dx * 0.5, dy * 0.5);
      });
      var end = function (e) {
        if (!drag || e.pointerId !== drag.id) return;
        drag = null;
        div.classList.remove('dragging');
      };
      div.addEventListener('pointerup', end);
      div.addEventListener('pointercancel', end);
      div.addEventListener('keydown', function (e) {
        var d = { ArrowLeft: [-5, 0], ArrowRight: [5, 0], ArrowUp: [0, -5], ArrowDown: [0, 5] }[e.key];
        if (!d) return;
        e.preventDefault();
        rotate3d(p, d[0], d[1]);
      });
    }
    p.chart.setOption(scatter3dOption(p, def, width), true);
  }

  /* ------------------------------------------------------------------ KPI tiles */

  function kpiTiles(data) {
    var row = data.rows[0];
    var box = el('div', { class: 'kpis' });
    data.columns.forEach(function (c, i) {
      var v = row[i];
      var text, cls = 'value';
      if (v === null || v === undefined) { text = '\u2014'; cls += ' null'; }
      else if (typeof v === 'number') text = columnUnit(c) === 'bytes' ? fmtBytes(v) : fmtNum(v);
      else if (typeof v === 'boolean') text = v ? 'yes' : 'no';
      else { text = TS_RE.test(v) ? fmtTs(v) : String(v); if (text.length > 10) cls += ' text'; }
      box.appendChild(el('div', { class: 'kpi', 'data-column': c },
        el('div', { class: 'label', text: c, title: c }),
        el('div', { class: cls, text: text, title: v === null ? 'NULL' : String(v) })));
    });
    return box;
  }

  /* ------------------------------------------------------------------ tables */

  function cellText(v, type, unit) {
    if (v === null || v === undefined) return 'NULL';
    if (typeof v === 'number') {
      if (unit === 'bytes') return fmtBytes(v);
      return Number.isInteger(v) ? String(v) : trimFloat(v);
    }
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    if (typeof v === 'object') return JSON.stringify(v);
    if (isTimeType(type) || TS_RE.test(v)) return fmtTs(v);
    return String(v);
  }

  function compareValues(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    if (typeof a === 'boolean' && typeof b === 'boolean') return (a ? 1 : 0) - (b ? 1 : 0);
    return String(a).localeCompare(String(b), 'en', { numeric: true });
  }

  function renderTable(p, data, host) {
    var t = p.table || { sort: null, dir: 1, filter: '', shown: TABLE_PAGE };
    p.table = t;
    host = host || p.body;
    if (host === p.body) resetBody(p); else host.innerHTML = '';
    var units = data.columns.map(columnUnit);
    // prose (a verdict's reason, a finding) wraps; other long text is clipped, in full on hover
    var longCol = data.columns.map(function (c, i) {
      if (!/reason|finding|recommendation|description|summary/i.test(c)) return false;
      var max = 0;
      for (var k = 0; k < Math.min(data.rows.length, 200); k++) {
        var v = data.rows[k][i];
        if (typeof v === 'string' && v.length > max) max = v.length;
      }
      return max > 60;
    });
    // Rows that can be marked true or false positive (feedback): the panel names its run and key
    // columns. The key column repeats the row's other columns, so it is left out of the grid
    // (the dialog shows it, the CSV keeps it); the Mark buttons are not in a static report.
    var fb = feedbackColumns(p.def, data);
    var marks = fb && !state.report;
    var shownCols = data.columns.map(function (c, i) { return i; }).filter(function (i) { return !fb || i !== fb.key; });
    var drawn = [];
    var search = el('input', { type: 'search', placeholder: 'Filter rows\u2026', 'aria-label': 'Filter rows', value: t.filter });
    var count = el('span', { class: 'count' });
    var wrap = el('div', { class: 'table-wrap' });
    if (p.def && p.def.height) wrap.style.maxHeight = p.def.height + 'px';
    var more = el('button', { type: 'button', class: 'small more', text: 'Show more rows' });
    host.appendChild(el('div', { class: 'table-tools' }, search, count));
    host.appendChild(wrap);
    host.appendChild(more);

    function rowsNow() {
      var rows = data.rows;
      var f = t.filter.trim().toLowerCase();
      if (f) {
        rows = rows.filter(function (r) {
          for (var i = 0; i < r.length; i++) {
            var v = r[i];
            if (v !== null && v !== undefined && cellText(v, data.types[i], null).toLowerCase().indexOf(f) >= 0) return true;
            if (v !== null && typeof v === 'number' && String(v).indexOf(f) >= 0) return true;
          }
          return false;
        });
      }
      if (t.sort !== null) {
        var i = t.sort, dir = t.dir;
        rows = rows.slice().sort(function (a, b) {
          var c = compareValues(a[i], b[i]);
          return a[i] === null || b[i] === null ? c : c * dir;
        });
      }
      return rows;
    }
    p.tableRows = rowsNow;

    function draw() {
      var rows = rowsNow();
      var shown = Math.min(rows.length, t.shown);
      var html = ['<table class="data"><thead><tr>'];
      shownCols.forEach(function (i) {
        var c = data.columns[i];
        var cls = t.sort === i ? (t.dir > 0 ? 'asc' : 'desc') : '';
        html.push('<th data-i="' + i + '" class="' + cls + '" title="' + esc(c + ' (' + (data.types[i] || '?') + '): click to sort') + '">' + esc(c) + '</th>');
      });
      if (marks) html.push('<th class="mark-col" title="Mark the row: \u2713 true positive (the flag was right), \u2717 false positive (it was not)">Mark</th>');
      html.push('</tr></thead><tbody>');
      drawn = rows.slice(0, shown);
      for (var k = 0; k < shown; k++) {
        var r = rows[k];
        html.push('<tr>');
        for (var j = 0; j < shownCols.length; j++) {
          var i = shownCols[j];
          var v = r[i];
          if (fb && i === fb.label) { html.push(feedbackCell(v, fb.note >= 0 ? r[fb.note] : null)); continue; }
          var text = cellText(v, data.types[i], units[i]);
          var json = typeof v === 'string' && /^(\{|\[|SELECT\b|WITH\b)/i.test(v);
          var cls = v === null || v === undefined ? 'null' : typeof v === 'number' ? 'num' : v === true ? 'true' : json && v.length > 40 ? 'clip' : longCol[i] ? 'wrap' : (typeof v === 'string' && v.length > 40 ? 'clip' : '');
          var title = (units[i] && typeof v === 'number') || (typeof v === 'string' && v.length > 40) ? ' title="' + esc(String(v)) + '"' : '';
          html.push('<td class="' + cls + '"' + title + '>' + esc(text) + '</td>');
        }
        if (marks) html.push(markCell(k, r, fb));
        html.push('</tr>');
      }
      html.push('</tbody></table>');
      wrap.innerHTML = html.join('');
      count.textContent = (rows.length === data.rows.length ? fmtInt(rows.length) + ' rows' : fmtInt(rows.length) + ' of ' + fmtInt(data.rows.length) + ' rows') +
        (shown < rows.length ? ', first ' + fmtInt(shown) + ' shown' : '');
      more.hidden = shown >= rows.length;
    }

    wrap.addEventListener('click', function (e) {
      var mark = e.target.closest('button.mark-btn');
      if (mark) {
        var row = drawn[Number(mark.getAttribute('data-k'))];
        if (row) openMarkDialog(p, fb, row, mark.getAttribute('data-label'), mark);
        return;
      }
      var th = e.target.closest('th[data-i]');
      if (!th) return;
      var i = Number(th.getAttribute('data-i'));
      if (t.sort === i) t.dir = -t.dir; else { t.sort = i; t.dir = colIsNum(data, i) || colIsTime(data, i) ? -1 : 1; }
      draw();
    });
    var timer = null;
    search.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(function () { t.filter = search.value; t.shown = TABLE_PAGE; draw(); }, 120);
    });
    more.addEventListener('click', function () { t.shown += TABLE_PAGE * 5; draw(); });
    draw();
    // after a mark, the keyboard stays on the row's buttons
    if (marks && p.focus) {
      var want = p.focus;
      p.focus = null;
      for (var k = 0; k < drawn.length; k++) {
        if (drawn[k][fb.key] === want.key) {
          var b = wrap.querySelector('button.mark-btn[data-k="' + k + '"][data-label="' + want.label + '"]');
          if (b) b.focus();
          break;
        }
      }
    }
  }

  function downloadTableCsv(p) {
    if (!p.data) return;
    var rows = p.tableRows ? p.tableRows() : p.data.rows;
    var name = 'netlens-' + (p.view ? p.view.id + '-' : '') + (p.def.id || 'result') + '-' + stamp() + '.csv';
    download(new Blob([toCsv(p.data.columns, rows)], { type: 'text/csv;charset=utf-8' }), name);
  }

  /* ------------------------------------------------------------------ feedback (marks) */

  var LABELS = {
    true_positive: { sign: '\u2713', name: 'true positive', cls: 'tp', long: 'the flag was right' },
    false_positive: { sign: '\u2717', name: 'false positive', cls: 'fp', long: 'the flag was wrong' }
  };

  /* The columns of a panel whose rows can be marked, or null: views.json names the run and key
   * columns ("feedback": {"subject", "run", "key"}); the SQL returns the mark as feedback and
   * feedback_note. */
  function feedbackColumns(def, data) {
    var f = def && def.feedback;
    if (!f || !f.subject) return null;
    var key = data.columns.indexOf(f.key || 'row_key');
    if (key < 0) return null;
    return {
      subject: f.subject, key: key, run: data.columns.indexOf(f.run || 'run_id'),
      label: data.columns.indexOf('feedback'), note: data.columns.indexOf('feedback_note')
    };
  }

  /* The mark, as a badge; its note on hover (and in the feedback_note column). */
  function feedbackCell(v, note) {
    var l = LABELS[v];
    if (!l) return v === null || v === undefined ? '<td class="null fb" title="not marked">\u2014</td>' : '<td>' + esc(v) + '</td>';
    return '<td class="fb"><span class="fb-mark ' + l.cls + '" title="' + esc(l.name + ': ' + l.long + (note ? ' \u2014 ' + note : '')) + '">' +
      l.sign + ' ' + esc(l.name) + '</span></td>';
  }

  function markCell(k, r, fb) {
    var current = fb.label >= 0 ? r[fb.label] : null;
    var what = String(r[fb.key]);
    var html = '<td class="mark">';
    Object.keys(LABELS).forEach(function (id) {
      var l = LABELS[id];
      var on = current === id;
      html += '<button type="button" class="mark-btn ' + l.cls + (on ? ' on' : '') + '" data-k="' + k + '" data-label="' + id + '"' +
        ' title="' + esc('Mark as ' + l.name + ' (' + l.long + ')' + (on ? '; marked so now' : '')) + '"' +
        ' aria-label="' + esc('Mark ' + what + ' as ' + l.name + (on ? ' (its mark now)' : '')) + '">' + l.sign + '</button>';
    });
    return html + '</td>';
  }

  var markDialog = null;

  /* The dialog of one mark: the label (preset by the button), an optional note, Save and Cancel.
   * Save stores the mark (POST /api/request, command feedback) and reruns the panel. */
  function openMarkDialog(p, fb, row, label, opener) {
    if (markDialog && markDialog.open) markDialog.close();
    if (markDialog) markDialog.remove();
    var key = row[fb.key];
    var run = fb.run >= 0 ? row[fb.run] : null;
    var current = fb.label >= 0 ? row[fb.label] : null;
    var currentNote = fb.note >= 0 ? row[fb.note] : null;
    var d = el('dialog', { class: 'mark-dialog', 'aria-labelledby': 'mark-title', 'aria-describedby': 'mark-what' });
    var radios = Object.keys(LABELS).map(function (id) {
      var l = LABELS[id];
      var input = el('input', { type: 'radio', name: 'mark-label', value: id });
      input.checked = id === label;
      return el('label', { class: 'mark-choice ' + l.cls }, input, ' ' + l.sign + ' ' + l.name + ': ' + l.long);
    });
    var note = el('textarea', { id: 'mark-note', rows: 3, maxlength: 2000, spellcheck: 'true', placeholder: 'Why, for whoever looks next (optional)' });
    if (currentNote && current === label) note.value = currentNote;
    var err = el('div', { class: 'error-box', role: 'alert', hidden: true });
    var cancel = el('button', { type: 'button', text: 'Cancel' });
    var save = el('button', { type: 'button', class: 'primary', text: 'Save' });
    var what = el('p', { id: 'mark-what', class: 'mark-what' },
      p.def.title + ': ', el('code', { text: String(key) }), run === null || run === undefined ? ' (every run)' : ' of run ' + run);
    d.appendChild(el('h2', { id: 'mark-title', text: 'Mark a flagged row' }));
    d.appendChild(what);
    if (current && LABELS[current]) {
      d.appendChild(el('p', { class: 'mark-now' }, 'Marked now: ',
        el('span', { class: 'fb-mark ' + LABELS[current].cls, text: LABELS[current].sign + ' ' + LABELS[current].name }),
        currentNote ? ' \u2014 ' + currentNote : null));
      d.appendChild(el('p', { class: 'mark-now', text: 'A new mark takes its place; the old one stays in the feedback table.' }));
    }
    d.appendChild(el('fieldset', { class: 'mark-choices' }, el('legend', { text: 'The flag was' }), radios[0], radios[1]));
    d.appendChild(el('label', { for: 'mark-note', class: 'mark-note-label', text: 'Note (optional)' }));
    d.appendChild(note);
    d.appendChild(err);
    d.appendChild(el('div', { class: 'mark-buttons' }, cancel, save));
    document.body.appendChild(d);
    markDialog = d;
    var saving = false;

    function close() { if (d.open) d.close(); }
    d.addEventListener('close', function () {
      d.remove();
      if (markDialog === d) markDialog = null;
      if (opener && document.contains(opener)) opener.focus();
    });
    // Escape closes the dialog (the browser's cancel event), so does a click on the backdrop
    // (whose clicks land on the dialog element, outside its box)
    d.addEventListener('click', function (e) {
      if (e.target !== d || saving) return;
      var r = d.getBoundingClientRect();
      if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom) close();
    });
    cancel.addEventListener('click', close);
    note.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); save.click(); }
    });
    save.addEventListener('click', function () {
      var chosen = d.querySelector('input[name="mark-label"]:checked');
      var text = note.value.trim();
      var request = {
        command: 'feedback', subject: fb.subject, run_id: run === undefined ? null : run, row_key: String(key),
        label: chosen ? chosen.value : label, note: text || null, analyst: null
      };
      saving = true;
      save.disabled = cancel.disabled = true;
      save.textContent = 'Saving\u2026';
      err.hidden = true;
      var gen = state.gen;
      api('/api/request', { body: request }).then(function (reply) {
        if (reply && reply.failure) throw new ApiError(reply.failure, 200);
        var said = ((reply && reply.items) || []).map(function (it) { return it.summary || it.warning; }).filter(Boolean);
        toast(said.length ? said.join('; ') : 'marked ' + LABELS[request.label].name);
        saving = false;
        p.focus = { key: key, label: opener ? opener.getAttribute('data-label') : request.label };
        close();
        if (gen === state.gen) loadPanel(p, gen);
      }).catch(function (e) {
        saving = false;
        save.disabled = cancel.disabled = false;
        save.textContent = 'Save';
        if (e.status === 401) return;
        err.textContent = 'The mark was not saved: ' + e.message;
        err.hidden = false;
        toast('feedback failed: ' + e.message, true);
      });
    });
    d.showModal();
    note.focus();
  }

  /* ------------------------------------------------------------------ charts */

  function axisStyle(extra) {
    var a = {
      axisLine: { lineStyle: { color: C.axis } },
      axisTick: { lineStyle: { color: C.axis } },
      axisLabel: { color: C.muted, fontSize: 11, hideOverlap: true },
      splitLine: { lineStyle: { color: C.split } },
      nameTextStyle: { color: C.muted }
    };
    return Object.assign(a, extra || {}, { axisLabel: Object.assign(a.axisLabel, (extra || {}).axisLabel || {}) });
  }

  function baseOption() {
    return {
      backgroundColor: 'transparent',
      color: PALETTE,
      useUTC: true,
      animation: false,
      // A named font list: with system-ui, ECharts measures labels narrower than it draws them.
      textStyle: { color: C.text, fontFamily: '"Helvetica Neue", Arial, "Liberation Sans", "DejaVu Sans", sans-serif' },
      // Tooltips drawn on the canvas: ECharts' HTML tooltips carry inline style attributes, which
      // the Content-Security-Policy (style-src 'self') refuses.
      tooltip: {
        renderMode: 'richText', backgroundColor: C.tooltip, borderColor: '#3a4048', confine: true,
        textStyle: { color: '#e6e6e6', fontSize: 12 }
      },
      grid: { left: 8, right: 30, top: 12, bottom: 6, containLabel: true }
    };
  }

  function legendOption(names, toolbox, width) {
    return {
      type: 'scroll', top: 0, left: 0, width: Math.max(120, (width || 400) - (toolbox ? 100 : 20)), itemWidth: 14, itemHeight: 8, itemGap: 12,
      textStyle: { color: C.text, fontSize: 11 }, pageTextStyle: { color: C.muted },
      pageIconColor: C.text, pageIconInactiveColor: C.axis,
      data: names, formatter: function (n) { return truncate(n, 36); }
    };
  }

  /* Box zoom and reset, for plots whose outliers squeeze the rest. */
  function toolboxOption(xOnly) {
    return {
      right: 2, top: -4, itemSize: 13, itemGap: 6,
      iconStyle: { borderColor: C.muted }, emphasis: { iconStyle: { borderColor: '#ffffff' } },
      feature: {
        dataZoom: { yAxisIndex: xOnly ? false : undefined, filterMode: 'none', title: { zoom: 'Zoom: drag a box', back: 'Undo the zoom' } },
        restore: { title: 'Reset' }
      }
    };
  }

  function applyColors(o, names) {
    var cs = colorsFor(names);
    o.series.forEach(function (s, i) {
      s.itemStyle = Object.assign(s.itemStyle || {}, { color: cs[i] });
      if (s.type === 'line') s.lineStyle = Object.assign(s.lineStyle || {}, { color: cs[i] });
    });
    return o;
  }

  function catLabel(v, isTime) {
    if (v === null || v === undefined) return 'NULL';
    if (isTime) return fmtTs(v);
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : trimFloat(v);
    return String(v);
  }

  /* Horizontal category labels: straight when they fit, else slanted, else thinned out. */
  function categoryAxisLabels(labels, width) {
    width = (width || 400) * 0.85;
    var max = labels.reduce(function (m, s) { return Math.max(m, Math.min(String(s).length, 24)); }, 0);
    var straight = labels.length * (max * 6.3 + 10) <= width;
    var slanted = labels.length * 15 <= width;
    var first = labels.length ? Math.min(String(labels[0]).length, 18) : 0;
    return {
      interval: straight || slanted ? 0 : Math.ceil(labels.length * 15 / width) - 1, rotate: straight ? 0 : 35,
      formatter: function (s) { return truncate(s, straight ? 24 : 18); },
      // ECharts' containLabel leaves the first slanted label too little room on the left
      gridLeft: straight ? 8 : Math.max(8, Math.round(first * 5 - 28))
    };
  }

  function categoryXAxis(o, labels, width) {
    var l = categoryAxisLabels(labels, width);
    o.grid.left = l.gridLeft;
    delete l.gridLeft;
    return l;
  }

  function chartOption(kind, data, def, width) {
    switch (kind) {
      case 'bar': case 'hbar': return barOption(kind === 'hbar', data, def, width);
      case 'pie': return pieOption(data, def, width);
      case 'line': case 'area': return lineOption(kind === 'area', data, def, width);
      case 'heatmap': return heatmapOption(data, def, width);
      case 'scatter': return scatterOption(data, def, width);
      case 'histogram': return histogramOption(data, def, width);
      default: return 'unknown panel kind ' + kind;
    }
  }

  function barOption(horizontal, data, def, width) {
    if (data.columns.length < 2) return 'a bar chart reads label, value[, value2 ...]';
    var isTime = colIsTime(data, 0);
    var labels = data.rows.map(function (r) { return catLabel(r[0], isTime); });
    var fmt = unitFormatter(def.unit, false);
    var series = data.columns.slice(1).map(function (c, k) {
      return {
        name: c, type: 'bar', barMaxWidth: 26, emphasis: { focus: 'series' },
        data: data.rows.map(function (r) { return num(r[k + 1]); })
      };
    });
    var names = data.columns.slice(1);
    var o = baseOption();
    var valueAxis = axisStyle({ type: 'value', axisLabel: { formatter: unitFormatter(def.unit, true) } });
    if (horizontal) {
      o.yAxis = axisStyle({ type: 'category', data: labels, inverse: true, axisLabel: { interval: 0, formatter: function (s) { return truncateMiddle(s, width < 420 ? 26 : 34); } } });
      o.xAxis = valueAxis;
      o.xAxis.axisLabel.hideOverlap = true;
    } else {
      o.xAxis = axisStyle({ type: 'category', data: labels, axisLabel: categoryXAxis(o, labels, width) });
      o.yAxis = valueAxis;
    }
    o.series = series;
    if (names.length > 1) applyColors(o, names);
    else if (names.length === 1) {
      // one series: colour each bar by its label when the labels are known things (states, verdicts)
      var cs = colorsFor(labels);
      if (labels.some(function (l) { return SEMANTIC[l]; })) series[0].itemStyle = { color: function (p) { return cs[p.dataIndex]; } };
    }
    o.tooltip.trigger = 'axis';
    o.tooltip.axisPointer = { type: 'shadow' };
    o.tooltip.valueFormatter = fmt;
    if (names.length > 1) { o.legend = legendOption(names, false, width); o.grid.top = 30; }
    return o;
  }

  function pieOption(data, def, width) {
    if (data.columns.length < 2) return 'a pie reads label, value';
    var fmt = unitFormatter(def.unit, false);
    var items = data.rows.map(function (r) {
      return { name: r[0] === null ? 'NULL' : String(r[0]), value: num(r[1]) };
    }).filter(function (d) { return d.value !== null && d.value > 0; });
    if (!items.length) return 'every value is zero or NULL';
    var o = baseOption();
    o.tooltip.trigger = 'item';
    o.tooltip.formatter = function (p) {
      return p.marker + rt(p.name) + ': ' + rt(fmt(p.value)) + ' (' + p.percent + ' %)';
    };
    var cs = colorsFor(items.map(function (d) { return d.name; }));
    items.forEach(function (d, i) { d.itemStyle = { color: cs[i] }; });
    var sum = items.reduce(function (t, d) { return t + d.value; }, 0) || 1;
    var longest = items.reduce(function (m, d) { return Math.max(m, Math.min(d.name.length, 20)); }, 0);
    var legendW = longest * 6.4 + 60;
    var narrow = (width || 400) - legendW < 170;
    var pct = new Map(items.map(function (d) { return [d.name, d.value / sum * 100]; }));
    o.legend = {
      type: 'scroll', orient: narrow ? 'horizontal' : 'vertical', right: narrow ? undefined : 4, left: narrow ? 0 : undefined,
      top: narrow ? undefined : 'middle', bottom: narrow ? 0 : undefined, itemWidth: 12, itemHeight: 8, itemGap: 8,
      textStyle: { color: C.text, fontSize: 11, rich: { p: { color: C.muted, fontSize: 11 } } },
      pageTextStyle: { color: C.muted }, pageIconColor: C.text, pageIconInactiveColor: C.axis,
      formatter: function (n) {
        var v = pct.get(n);
        return truncate(n, 20) + (v === undefined ? '' : '  {p|' + (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + ' %}');
      }
    };
    o.series = [{
      type: 'pie', radius: narrow ? ['36%', '62%'] : ['42%', '70%'], data: items,
      center: narrow ? ['50%', '44%'] : [Math.max(90, ((width || 400) - legendW) / 2) + 'px', '50%'],
      label: { show: false }, labelLine: { show: false },
      emphasis: { scale: true, scaleSize: 4 },
      itemStyle: { borderColor: C.panel, borderWidth: 1 }
    }];
    return o;
  }

  /* Long format (x, series, y) or (x, y) to named series of [x, y] points. */
  function seriesOf(data, xConv) {
    var two = data.columns.length === 2;
    var map = new Map();
    data.rows.forEach(function (r) {
      var name = two ? data.columns[1] : (r[1] === null ? 'NULL' : String(r[1]));
      var y = num(two ? r[1] : r[2]);
      if (!map.has(name)) map.set(name, []);
      map.get(name).push([xConv(r[0]), y]);
    });
    return map;
  }

  function lineOption(stacked, data, def, width) {
    if (data.columns.length < 2 || data.columns.length > 3) return 'a line chart reads x, series, y (or x, y)';
    if (!colIsNum(data, data.columns.length - 1) && data.rows.some(function (r) { return r[r.length - 1] !== null && typeof r[r.length - 1] !== 'number'; })) {
      return 'the last column (y) must be a number';
    }
    var xTime = colIsTime(data, 0), xNum = !xTime && colIsNum(data, 0);
    var conv = xTime ? tsToMs : xNum ? num : function (v) { return v === null ? 'NULL' : String(v); };
    var map = seriesOf(data, conv);
    var names = Array.from(map.keys());
    if (stacked) {
      // biggest first, "other" last
      var total = function (n) { return map.get(n).reduce(function (s, p) { return s + (p[1] || 0); }, 0); };
      names.sort(function (a, b) { return (a === 'other') - (b === 'other') || total(b) - total(a); });
    }
    var xs = null;
    if (stacked || !(xTime || xNum)) {
      var seen = new Map();
      data.rows.forEach(function (r) { var x = conv(r[0]); if (!seen.has(x)) seen.set(x, true); });
      xs = Array.from(seen.keys());
      if (xTime || xNum) xs.sort(function (a, b) { return a - b; });
    }
    var series = names.map(function (n) {
      var pts = map.get(n);
      if (stacked) {
        var m = new Map(pts.map(function (p) { return [p[0], p[1]]; }));
        pts = xs.map(function (x) { return [x, m.has(x) && m.get(x) !== null ? m.get(x) : 0]; });
      }
      return {
        name: n, type: 'line', data: pts, showSymbol: pts.length <= 30, symbolSize: 5,
        lineStyle: { width: 1.6 }, emphasis: { focus: 'series' }, sampling: pts.length > 600 ? 'lttb' : undefined,
        stack: stacked ? 'total' : undefined, areaStyle: stacked ? { opacity: 0.38 } : undefined,
        connectNulls: false
      };
    });
    var o = baseOption();
    var xType = xTime ? 'time' : xNum ? 'value' : 'category';
    o.xAxis = axisStyle({ type: xType, boundaryGap: xType === 'category' ? false : undefined, splitLine: { show: false, lineStyle: { color: C.split } } });
    if (xType === 'category') { o.xAxis.data = xs; o.xAxis.axisLabel = Object.assign(o.xAxis.axisLabel, categoryXAxis(o, xs, width)); }
    if (xType === 'value') { o.xAxis.scale = true; if (def.x_unit) o.xAxis.axisLabel.formatter = unitFormatter(def.x_unit, true); }
    if (xType === 'time') {
      o.xAxis.axisLabel.formatter = TIME_LABELS;
      // a phone-wide chart has room for few times: fewer ticks, and none drawn over another
      o.xAxis.axisLabel.hideOverlap = true;
      if (width < 520) o.xAxis.splitNumber = 3;
    }
    var logY = def.y_log && data.rows.every(function (r) { var y = num(r[r.length - 1]); return y === null || y > 0; });
    o.yAxis = axisStyle({ type: logY ? 'log' : 'value', axisLabel: { formatter: unitFormatter(def.unit, true) } });
    o.series = series;
    applyColors(o, names);
    o.tooltip.trigger = 'axis';
    o.tooltip.valueFormatter = unitFormatter(def.unit, false);
    if (xType !== 'category' && width >= 520) o.toolbox = toolboxOption(true);
    o.grid.top = 30;
    if (names.length > 1 || data.columns.length === 3) o.legend = legendOption(names, !!o.toolbox, width);
    return o;
  }

  function heatmapOption(data, def, width) {
    if (data.columns.length !== 3) return 'a heatmap reads x, y, v';
    var xTime = colIsTime(data, 0);
    var lab = function (v, t) { return catLabel(v, t); };
    var xs = [], ys = [], xi = new Map(), yi = new Map();
    data.rows.forEach(function (r) {
      var x = lab(r[0], xTime), y = lab(r[1], colIsTime(data, 1));
      if (!xi.has(x)) { xi.set(x, xs.length); xs.push(x); }
      if (!yi.has(y)) { yi.set(y, ys.length); ys.push(y); }
    });
    if (colIsNum(data, 0) || xTime) {
      // keep numeric or time x in order
      var order = xs.slice().sort(function (a, b) { return compareValues(Number(a) || a, Number(b) || b); });
      if (xTime) order = xs.slice().sort();
      xs = order;
      xi = new Map(xs.map(function (x, i) { return [x, i]; }));
    }
    var vals = [];
    data.rows.forEach(function (r) { var v = num(r[2]); if (v !== null) vals.push(v); });
    var min = Math.min.apply(null, vals.length ? vals : [0]);
    var max = Math.max.apply(null, vals.length ? vals : [1]);
    var diverging = min < 0;
    var pos = vals.filter(function (v) { return v > 0; });
    var minPos = pos.length ? Math.min.apply(null, pos) : 1;
    // counts and bytes that span orders of magnitude get a logarithmic colour scale
    var logScale = !diverging && max / minPos >= 1000;
    var tr = logScale ? function (v) { return Math.log10(1 + v); } : function (v) { return v; };
    var points = data.rows.map(function (r) {
      var v = num(r[2]);
      return [xi.get(lab(r[0], xTime)), yi.get(lab(r[1], colIsTime(data, 1))), v === null ? '-' : tr(v), v];
    });
    var fmt = unitFormatter(def.unit, true);
    var fmtFull = unitFormatter(def.unit, false);
    var lo = diverging ? -Math.max(Math.abs(min), Math.abs(max)) : min;
    var hi = diverging ? -lo : max;
    if (lo === hi) hi = lo + 1;
    var o = baseOption();
    o.grid = { left: 8, right: 14, top: 8, bottom: 36, containLabel: true };
    o.xAxis = axisStyle({ type: 'category', data: xs, splitArea: { show: false }, axisLabel: categoryXAxis(o, xs, width) });
    o.yAxis = axisStyle({ type: 'category', data: ys, inverse: true, splitArea: { show: false }, axisLabel: { interval: ys.length <= 30 ? 0 : 'auto', formatter: function (s) { return truncate(s, 24); } } });
    o.visualMap = {
      dimension: 2, min: tr(lo), max: tr(hi), calculable: false, orient: 'horizontal', left: 'center', bottom: 0,
      itemWidth: 10, itemHeight: 140, textGap: 6, textStyle: { color: C.muted, fontSize: 10 },
      text: [fmt(hi), fmt(lo) + (logScale ? '  (log scale)' : '')],
      inRange: { color: diverging ? ['#2f6fd6', '#2a2f37', '#e0464f'] : ['#1f3147', '#2c5aa0', '#37a2c8', '#73bf69', '#f2cc0c'] }
    };
    var cells = xs.length * ys.length;
    // A cell's number is written in it only where it fits (about 40 px beside the row labels):
    // on a phone the cells of a 7 x 7 matrix are narrower, and the tooltip gives the value.
    var labelWidth = Math.min(24, ys.reduce(function (m, y) { return Math.max(m, String(y).length); }, 0)) * 6 + 16;
    var cellWidth = (width - labelWidth - 22) / Math.max(xs.length, 1);
    o.series = [{
      type: 'heatmap', data: points,
      label: { show: cells <= 140 && cellWidth >= 40, color: '#f4f5f5', fontSize: 10, formatter: function (p) { return p.value[3] === null ? '' : fmt(p.value[3]); } },
      itemStyle: { borderColor: C.panel, borderWidth: 1 },
      emphasis: { itemStyle: { borderColor: '#fff', borderWidth: 1 } }
    }];
    o.tooltip.trigger = 'item';
    o.tooltip.formatter = function (p) {
      return rt(ys[p.value[1]]) + ' \u00d7 ' + rt(xs[p.value[0]]) + ': ' + rt(p.value[3] === null ? 'NULL' : fmtFull(p.value[3]));
    };
    return o;
  }

  function scatterOption(data, def, width) {
    var n = data.columns.length;
    if (n < 2 || n > 4) return 'a scatter plot reads x, y[, series[, label]]';
    var xTime = colIsTime(data, 0), xNum = !xTime && colIsNum(data, 0);
    var yTime = colIsTime(data, 1), yNum = !yTime && colIsNum(data, 1);
    var xConv = xTime ? tsToMs : xNum ? num : function (v) { return v === null ? 'NULL' : String(v); };
    var yConv = yTime ? tsToMs : yNum ? num : function (v) { return v === null ? 'NULL' : String(v); };
    var groups = new Map();
    var ycats = [];
    var yseen = new Set();
    data.rows.forEach(function (r) {
      var name = n >= 3 ? (r[2] === null ? 'NULL' : String(r[2])) : data.columns[1];
      if (!groups.has(name)) groups.set(name, []);
      var y = yConv(r[1]);
      if (!yNum && !yTime && !yseen.has(y)) { yseen.add(y); ycats.push(y); }
      groups.get(name).push([xConv(r[0]), y, n >= 4 ? r[3] : null]);
    });
    var names = Array.from(groups.keys());
    var total = data.rows.length;
    var o = baseOption();
    o.xAxis = axisStyle({ type: xTime ? 'time' : xNum ? 'value' : 'category', scale: true, splitLine: { show: true, lineStyle: { color: C.split } } });
    if (!xTime && !xNum) o.xAxis.data = Array.from(new Set(data.rows.map(function (r) { return xConv(r[0]); })));
    if (def.x_unit) o.xAxis.axisLabel.formatter = unitFormatter(def.x_unit, true);
    if (xTime) o.xAxis.axisLabel.formatter = TIME_LABELS;
    var logY = yNum && def.y_log && data.rows.every(function (r) { var y = num(r[1]); return y === null || y > 0; });
    o.yAxis = axisStyle({ type: yTime ? 'time' : logY ? 'log' : yNum ? 'value' : 'category', scale: yNum && !logY });
    if (!yTime && !yNum) {
      o.yAxis.data = ycats;
      o.yAxis.axisLabel.interval = 0;
      o.yAxis.axisLabel.formatter = function (s) { return truncate(s, 34); };
      o.yAxis.splitLine = { show: true, lineStyle: { color: C.split } };
    } else {
      o.yAxis.axisLabel.formatter = unitFormatter(def.unit, true);
    }
    o.series = names.map(function (name) {
      return {
        name: name, type: 'scatter', data: groups.get(name), symbolSize: total > 1500 ? 4 : total > 300 ? 6 : 8,
        large: total > 2000, itemStyle: { opacity: 0.8 }, emphasis: { focus: 'series' }
      };
    });
    var fx = xTime ? function (v) { return fmtTs(msToIso(v)); } : def.x_unit ? unitFormatter(def.x_unit, false) : fmtNum;
    var fy = yTime ? function (v) { return fmtTs(msToIso(v)); } : yNum ? unitFormatter(def.unit, false) : String;
    o.tooltip.trigger = 'item';
    o.tooltip.formatter = function (p) {
      var v = p.value;
      return p.marker + rt(p.seriesName) + (v[2] !== null && v[2] !== undefined ? '\n' + rt(v[2]) : '') +
        '\n' + rt(data.columns[0]) + ': ' + rt(fx(v[0])) + '\n' + rt(data.columns[1]) + ': ' + rt(fy(v[1]));
    };
    applyColors(o, names);
    var catY = !yTime && !yNum;
    if (!(catY && !xNum && !xTime) && width >= 520) o.toolbox = toolboxOption(catY);
    o.grid.top = 30;
    if (names.length > 1 || n >= 3) o.legend = legendOption(names, !!o.toolbox, width);
    return o;
  }

  function histogramOption(data, def, width) {
    if (data.columns.length < 2) return 'a histogram reads bucket, count[, threshold]';
    var numeric = colIsNum(data, 0);
    var thrIdx = data.columns.indexOf('threshold');
    var threshold = null;
    if (thrIdx >= 0) data.rows.forEach(function (r) { if (r[thrIdx] !== null && threshold === null) threshold = num(r[thrIdx]); });
    var buckets = data.rows.map(function (r) { return r[0]; });
    var counts = data.rows.map(function (r) { return num(r[1]); });
    var fmtB = unitFormatter(def.unit, false);
    var labels, mark = null;
    if (numeric && buckets.length) {
      var bs = buckets.map(num);
      var step = Infinity;
      for (var i = 1; i < bs.length; i++) { var d = bs[i] - bs[i - 1]; if (d > 1e-12 && d < step) step = d; }
      if (!isFinite(step)) step = 1;
      var byB = new Map();
      bs.forEach(function (b, i) { byB.set(Math.round(b / step), (byB.get(Math.round(b / step)) || 0) + (counts[i] || 0)); });
      var lo = Math.round(bs[0] / step), hi = Math.round(bs[bs.length - 1] / step);
      if (threshold !== null) {
        var tb = Math.floor(threshold / step);
        lo = Math.min(lo, tb); hi = Math.max(hi, tb);
      }
      labels = []; counts = [];
      if (hi - lo <= 2000) {
        for (var k = lo; k <= hi; k++) { labels.push(fmtB(+(k * step).toFixed(10))); counts.push(byB.get(k) || 0); }
        if (threshold !== null) mark = (threshold - lo * step) / step - 0.5;
      } else {
        labels = bs.map(fmtB); counts = data.rows.map(function (r) { return num(r[1]); });
      }
    } else {
      labels = buckets.map(function (b) { return catLabel(b, false); });
    }
    var o = baseOption();
    o.xAxis = axisStyle({ type: 'category', data: labels, axisLabel: categoryXAxis(o, labels, width) });
    o.yAxis = axisStyle({ type: 'value', axisLabel: { formatter: fmtCompact } });
    var s = { name: data.columns[1], type: 'bar', data: counts, barCategoryGap: '6%', itemStyle: { color: PALETTE[0] } };
    if (mark !== null) {
      o.grid.top = 22;
      s.markLine = {
        silent: true, symbol: 'none', animation: false,
        lineStyle: { color: C.bad, type: 'dashed', width: 1.5 },
        label: { formatter: 'threshold ' + trimFloat(threshold), color: C.bad, fontSize: 11, position: 'end' },
        data: [{ xAxis: mark }]
      };
    }
    o.series = [s];
    o.tooltip.trigger = 'axis';
    o.tooltip.axisPointer = { type: 'shadow' };
    o.tooltip.valueFormatter = fmtNum;
    return o;
  }

  /* ------------------------------------------------------------------ actions (requests) */

  function renderActions(view) {
    var box = $('actions');
    (view.actions || []).forEach(function (a) {
      box.appendChild(el('button', {
        type: 'button', class: a.kind === 'write' ? 'primary' : '', text: a.label, title: a.note || '',
        onclick: function (e) { runAction(view, a, e.target); }
      }));
    });
  }

  function runAction(view, a, button) {
    button.disabled = true;
    var out = $('action-output');
    out.innerHTML = '';
    var lines = el('ul', { class: 'lines' });
    var status = el('span', { class: 'card-meta', text: 'running\u2026' });
    var body = el('div', { class: 'card-body' });
    var card = el('section', { class: 'card w3 action-card' },
      el('div', { class: 'card-head' }, el('h2', { text: a.label }),
        el('div', { class: 'tools' }, el('button', { type: 'button', text: 'Close', onclick: function () { out.innerHTML = ''; } }))),
      status, lines, body);
    out.appendChild(card);
    var t0 = Date.now();
    api('/api/request', { body: a.request }).then(function (reply) {
      var items = (reply && reply.items) || [];
      var rowsItems = [];
      items.forEach(function (it) {
        if (it.summary !== undefined) lines.appendChild(el('li', { text: it.summary }));
        else if (it.warning !== undefined) lines.appendChild(el('li', { class: 'warning', text: it.warning }));
        else if (it.rows) rowsItems.push(it.rows);
      });
      if (reply && reply.failure) lines.appendChild(el('li', { class: 'failure', text: 'failed: ' + reply.failure }));
      status.textContent = 'done in ' + fmtSeconds((Date.now() - t0) / 1000);
      if (a.kind !== 'write' && rowsItems.length) {
        return rowsItems.reduce(function (prev, ri) {
          return prev.then(function () {
            return api('/api/sql', { body: { sql: ri.sql } }).then(function (data) {
              var host = el('div');
              if (ri.title) body.appendChild(el('h2', { class: 'card-note', text: ri.title }));
              body.appendChild(host);
              if (!data.rows.length) { host.appendChild(el('div', { class: 'empty' }, el('strong', { text: 'Nothing to report.' }))); return; }
              var p = { def: { id: a.id, kind: 'table' }, view: view, data: data, body: host };
              body.appendChild(el('div', { class: 'tools' }, el('button', { type: 'button', text: 'CSV', onclick: function () { downloadTableCsv(p); } })));
              renderTable(p, data, host);
            });
          });
        }, Promise.resolve());
      }
    }).catch(function (e) {
      if (e.status === 401) return;
      status.textContent = 'failed';
      lines.appendChild(el('li', { class: 'failure', text: e.message }));
    }).then(function () {
      button.disabled = false;
      if (a.kind === 'write' && state.route === view.id) { refreshAll(); loadStatus(); }
    });
  }

  /* ------------------------------------------------------------------ SQL page */

  function showSql(q) {
    clearView();
    state.route = 'sql';
    markNav('sql');
    document.title = 'SQL \u00b7 netlens';
    $('view-title').textContent = 'SQL';
    $('view-desc').textContent = 'Any query on the database, run read-only. :since and :until are replaced with the chosen range (TIMESTAMP literals, UTC). At most 5000 rows come back; Export gives the whole result.';
    $('range-hint').textContent = rangeHint();
    var gen = state.gen;
    var ta = el('textarea', { spellcheck: 'false', 'aria-label': 'SQL', autocapitalize: 'off', autocomplete: 'off' });
    var saved = null;
    try { saved = sessionStorage.getItem('netlens.sql'); } catch (e) { saved = null; }
    ta.value = q || saved || DEFAULT_SQL;
    var kind = el('select', { 'aria-label': 'Chart kind' });
    ['auto', 'table only'].concat(CHART_KINDS).concat(['kpi']).forEach(function (k) { kind.appendChild(el('option', { value: k, text: k })); });
    var runBtn = el('button', { type: 'button', class: 'primary', text: 'Run', title: 'Ctrl+Enter' });
    var csvBtn = el('button', { type: 'button', text: 'CSV', title: 'Download the rows shown as CSV', disabled: true });
    var expCsv = el('button', { type: 'button', text: 'Export CSV', title: 'The whole result, from the server' });
    var expPq = el('button', { type: 'button', text: 'Export Parquet', title: 'The whole result, from the server' });
    var meta = el('span', { class: 'hint' });
    var editor = el('section', { class: 'card w3' },
      el('div', { class: 'sql-editor' }, ta,
        el('div', { class: 'sql-bar' }, runBtn, el('label', { text: 'Chart' }), kind, meta, el('span', { class: 'spacer' }), csvBtn, expCsv, expPq)));
    var chartP = { def: { id: 'sql-chart', kind: 'bar', width: 3, height: 320 }, view: null, chart: null, ro: null };
    chartP.meta = el('div', { class: 'card-meta' });
    chartP.body = el('div', { class: 'card-body' });
    chartP.card = el('section', { class: 'card w3' }, el('div', { class: 'card-head' }, el('h2', { text: 'Chart' })), chartP.body);
    var tableP = { def: { id: 'sql', kind: 'table', height: 420 }, view: { id: 'sql' }, chart: null, ro: null };
    tableP.meta = el('div', { class: 'card-meta' });
    tableP.body = el('div', { class: 'card-body' });
    tableP.card = el('section', { class: 'card w3' },
      el('div', { class: 'card-head' }, el('h2', { text: 'Rows' })), tableP.meta, tableP.body);
    chartP.card.hidden = true;
    tableP.card.hidden = true;
    state.panels.push(chartP, tableP);
    var grid = $('grid');
    grid.appendChild(editor);
    grid.appendChild(chartP.card);
    grid.appendChild(tableP.card);
    var last = null;

    function sqlNow() { return substitute(ta.value, currentRange()); }

    function drawResult() {
      if (!last) return;
      var k = kind.value === 'auto' ? guessKind(last) : kind.value;
      tableP.card.hidden = false;
      tableP.table = null;
      renderMeta(tableP, last);
      if (!last.rows.length) { renderEmpty(tableP); chartP.card.hidden = true; return; }
      renderTable(tableP, last);
      if (k === 'table only' || k === 'table' || !k) { chartP.card.hidden = true; disposePanel(chartP); return; }
      chartP.card.hidden = false;
      chartP.def.kind = k;
      if (k === 'kpi') { resetBody(chartP); chartP.body.appendChild(kpiTiles(last)); return; }
      disposePanel(chartP);
      chartP.body.innerHTML = '';
      drawChart(chartP, k, last, chartP.def);
    }

    function run() {
      try { sessionStorage.setItem('netlens.sql', ta.value); } catch (e) { /* private mode */ }
      runBtn.disabled = true;
      meta.textContent = 'running\u2026';
      api('/api/sql', { body: { sql: sqlNow() } }).then(function (data) {
        if (gen !== state.gen) return;
        last = data;
        meta.textContent = '';
        csvBtn.disabled = false;
        drawResult();
      }, function (e) {
        if (gen !== state.gen) return;
        last = null;
        meta.textContent = '';
        csvBtn.disabled = true;
        chartP.card.hidden = true;
        tableP.card.hidden = false;
        tableP.meta.textContent = '';
        renderError(tableP, e.message);
      }).then(function () { runBtn.disabled = false; });
    }

    runBtn.addEventListener('click', run);
    kind.addEventListener('change', drawResult);
    ta.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
    });
    csvBtn.addEventListener('click', function () { if (last) { tableP.data = last; downloadTableCsv(tableP); } });
    expCsv.addEventListener('click', function () { exportSql(sqlNow(), 'csv', expCsv); });
    expPq.addEventListener('click', function () { exportSql(sqlNow(), 'parquet', expPq); });
    state.sqlRun = run;
    if (q) run();
  }

  function guessKind(data) {
    var n = data.columns.length;
    if (!data.rows.length || n < 2) return 'table only';
    var lastNum = colIsNum(data, n - 1);
    if (data.rows.length === 1 && n <= 8) return 'kpi';
    if (colIsTime(data, 0) && lastNum && n <= 3) return 'line';
    if (n === 2 && lastNum && !colIsNum(data, 0)) return data.rows.length <= 40 ? 'bar' : 'table only';
    if (n >= 2 && n <= 4 && colIsNum(data, 0) && colIsNum(data, 1)) return 'scatter';
    if (n === 3 && !colIsNum(data, 0) && !colIsNum(data, 1) && lastNum) return 'heatmap';
    return 'table only';
  }

  /* ------------------------------------------------------------------ refresh */

  /* Re-reads the range, then every panel of the visible view (the SQL page reruns nothing). */
  function refreshAll(fromEvent) {
    state.lastRefresh = Date.now();
    state.refreshing = true;
    var gen = state.gen;
    var statusPromise = fromEvent ? loadStatus() : Promise.resolve();
    return api('/api/range').then(function (r) { state.range = r; }, function () { /* keep the old range */ })
      .then(function () {
        $('range-hint').textContent = rangeHint();
        if (state.route === 'sql' || gen !== state.gen) return null;
        state.gen++;
        return loadPanels(state.gen);
      })
      .then(function () { return statusPromise; })
      .then(function () {
        state.updatedAt = new Date().toISOString().slice(11, 19) + ' UTC';
        renderStatus();
      })
      .catch(function () { /* shown per panel */ })
      .then(function () {
        state.refreshing = false;
        if (state.pending) { state.pending = false; scheduleRefresh(); }
      });
  }

  /* ------------------------------------------------------------------ static report */

  function reportHint() {
    var b = state.report;
    return 'Report of ' + fmtTs(b.since) + ' \u2013 ' + fmtTs(b.until) + ' UTC, generated ' +
      fmtTs(String(b.generated_at).replace(/Z$/, '')) + ' UTC: the rows are in this file, nothing is fetched.';
  }

  function initReport(node) {
    var b;
    try { b = JSON.parse(node.textContent); } catch (e) {
      $('view-title').textContent = 'This report cannot be read';
      $('view-desc').textContent = e.message;
      return;
    }
    state.report = b;
    state.views = b.views || [];
    state.views.forEach(function (v) { state.byId[v.id] = v; });
    $('range').hidden = true;
    $('status-dot').className = 'dot';
    $('status-text').textContent = 'netlens report \u00b7 ' + fmtTs(b.since) + ' \u2013 ' + fmtTs(b.until) + ' UTC';
    renderNav();
    window.addEventListener('hashchange', route);
    route();
  }

  /* ------------------------------------------------------------------ start */

  function init() {
    var reportNode = document.getElementById('netlens-report');
    if (reportNode) { initReport(reportNode); return; }
    if (!window.echarts) {
      document.body.appendChild(el('div', { class: 'fatal', text: 'echarts.min.js did not load; the charts cannot be drawn.' }));
    }
    $('refresh').addEventListener('click', function () {
      if (state.route === 'sql' && state.sqlRun) state.sqlRun(); else refreshAll();
    });
    Promise.all([api('/api/views'), api('/api/range')]).then(function (res) {
      state.views = res[0] || [];
      state.views.forEach(function (v) { state.byId[v.id] = v; });
      state.range = res[1] || {};
      initRange();
      renderNav();
      window.addEventListener('hashchange', route);
      route();
      loadStatus().then(function () {
        state.updatedAt = new Date().toISOString().slice(11, 19) + ' UTC';
        renderStatus();
      });
      connectEvents();
    }).catch(function (e) {
      if (e.status === 401) return;
      $('view-title').textContent = 'The dashboard could not start';
      $('view-desc').textContent = e.message;
    });
  }

  init();
})();
