// The timeline picture of a subject: one row per sensitivity bit, its states
// from the data origin on (active → archived → expired → obliviated), "now"
// marked and each bit's next transition highlighted. Drawn as SVG to the
// container's width (redrawn when it changes), so text stays readable at
// any zoom. Every state is a fill pattern as well as a colour, and named in
// text; transitionsTable gives the same facts as a table.

import {h, s, table, fmtTime, fmtDate, relative, stateBadge} from './dom.js';

const STATES = ['active', 'archived', 'expired', 'obliviated'];
const COLOUR = {active: '#0f766e', archived: '#a15c07', expired: '#7e22ce', obliviated: '#3f4650'};
const DAY = 86400000;

let seq = 0;

export function drawTimeline(container, v) {
  let lastWidth = 0;
  const uid = 'tl' + (++seq);
  const draw = () => {
    const w = Math.max(260, Math.floor(container.clientWidth));
    if (w === lastWidth) return;
    lastWidth = w;
    container.replaceChildren(picture(v, w, uid), legend(uid));
  };
  draw();
  if (typeof ResizeObserver === 'function') new ResizeObserver(draw).observe(container);
}

function patterns(uid) {
  const defs = s('defs');
  for (const st of STATES) {
    const p = s('pattern', {id: uid + '-' + st, patternUnits: 'userSpaceOnUse', width: 8, height: 8},
      s('rect', {width: 8, height: 8, fill: COLOUR[st]}));
    if (st === 'archived') p.append(s('path', {d: 'M-2,2 l4,-4 M0,8 l8,-8 M6,10 l4,-4', stroke: '#fff', 'stroke-width': 1.5, 'stroke-opacity': 0.55}));
    if (st === 'expired') p.append(s('circle', {cx: 4, cy: 4, r: 1.6, fill: '#fff', 'fill-opacity': 0.6}));
    if (st === 'obliviated') p.append(s('path', {d: 'M0,0 l8,8 M8,0 l-8,8', stroke: '#fff', 'stroke-width': 1, 'stroke-opacity': 0.45}));
    defs.append(p);
  }
  return defs;
}

function segments(b, t0, tEnd) {
  const out = [];
  let from = t0;
  let state = b.transitions.length ? b.transitions[0].from : b.state;
  for (const tr of b.transitions) {
    const at = Date.parse(tr.at);
    if (at > from) out.push({from, to: at, state});
    from = Math.max(from, at);
    state = tr.to;
  }
  if (tEnd > from) out.push({from, to: tEnd, state});
  return out;
}

function picture(v, width, uid) {
  const now = Date.parse(v.at);
  const t0 = Date.parse(v.timeline_from);
  let tMax = now;
  for (const b of v.bits) for (const tr of b.transitions) tMax = Math.max(tMax, Date.parse(tr.at));
  const span = Math.max(tMax - t0, 30 * DAY);
  const tEnd = Math.max(t0 + span * 1.08, now + 30 * DAY);
  const pad = 10;
  const x = t => pad + (t - t0) / (tEnd - t0) * (width - 2 * pad);

  const top = 22;
  const rowH = 54;
  const barY = 22;
  const barH = 22;
  const height = top + v.bits.length * rowH + 30;

  let soonest = null;
  for (const b of v.bits) {
    if (b.next_transition && (!soonest || Date.parse(b.next_transition.at) < Date.parse(soonest.at))) soonest = b.next_transition;
  }
  const subject = v.subject.entity + '/' + v.subject.id;
  const titleId = uid + '-title';
  const descId = uid + '-desc';
  const svg = s('svg', {
    width, height, viewBox: '0 0 ' + width + ' ' + height, role: 'img', 'aria-labelledby': titleId + ' ' + descId,
    class: 'tl', 'data-now': v.at,
  },
  s('title', {id: titleId}, 'Timeline of ' + subject),
  s('desc', {id: descId}, 'From ' + fmtDate(v.timeline_from) + ' to ' + fmtDate(tEnd) + '. Now is ' + fmtTime(v.at) + '. ' +
    (soonest ? 'Next transition: ' + soonest.from + ' to ' + soonest.to + ' at ' + fmtTime(soonest.at) + '.' : 'No transition is ahead.')),
  patterns(uid));

  // Axis ticks.
  const ticks = Math.max(2, Math.floor(width / 150));
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + (tEnd - t0) * i / ticks;
    const tx = x(t);
    svg.append(s('line', {class: 'tl-tick', x1: tx, x2: tx, y1: top, y2: height - 24}));
    const anchor = i === 0 ? 'start' : i === ticks ? 'end' : 'middle';
    svg.append(s('text', {class: 'tl-axis', x: tx, y: height - 8, 'text-anchor': anchor}, fmtDate(t)));
  }

  v.bits.forEach((b, i) => {
    const y = top + i * rowH;
    const g = s('g', {class: 'tl-row', 'data-bit': b.bit, 'data-sensitivity': b.sensitivity});
    const next = b.next_transition;
    g.append(s('text', {class: 'tl-label', x: pad, y: y + 15},
      b.sensitivity + ' (bit ' + b.bit + '): ' + b.state + (next ? ' — next ' + next.to + ' on ' + fmtDate(next.at) : ' — no transition ahead')));
    for (const seg of segments(b, t0, tEnd)) {
      const x1 = x(seg.from);
      const x2 = x(seg.to);
      const w = Math.max(1, x2 - x1);
      g.append(s('rect', {
        class: 'tl-seg', 'data-state': seg.state, x: x1, y: y + barY, width: w, height: barH,
        fill: 'url(#' + uid + '-' + seg.state + ')', stroke: '#fff', 'stroke-width': 1,
      }, s('title', null, b.sensitivity + ': ' + seg.state + ' from ' + fmtDate(seg.from) + (seg.to >= tEnd ? ' on' : ' to ' + fmtDate(seg.to)))));
      // Clear of the next-transition diamond when one starts the segment.
      const inset = next && Date.parse(next.at) === seg.from ? 12 : 5;
      if (w > seg.state.length * 7 + inset + 5) {
        g.append(s('text', {class: 'tl-seg-text', x: x1 + inset, y: y + barY + 15, 'aria-hidden': 'true'}, seg.state));
      }
    }
    if (next) {
      const nx = x(Date.parse(next.at));
      const cy = y + barY + barH / 2;
      const isSoonest = soonest && next.at === soonest.at;
      g.append(s('path', {
        class: 'tl-next' + (isSoonest ? ' tl-soonest' : ''), 'data-at': next.at,
        d: 'M' + nx + ',' + (cy - 10) + ' l8,10 l-8,10 l-8,-10 z',
      }, s('title', null, 'Next: ' + next.from + ' → ' + next.to + ' at ' + fmtTime(next.at))));
    }
    svg.append(g);
  });

  // "now" on top of everything.
  const nx = x(now);
  svg.append(s('line', {class: 'tl-now', x1: nx, x2: nx, y1: top - 6, y2: height - 24}));
  const anchor = nx < 40 ? 'start' : nx > width - 40 ? 'end' : 'middle';
  svg.append(s('text', {class: 'tl-now-text', x: nx, y: 13, 'text-anchor': anchor}, 'now'));
  return svg;
}

function legend(uid) {
  const ul = h('ul', {class: 'legend', 'aria-label': 'Legend'});
  for (const st of STATES) {
    ul.append(h('li', null, s('svg', {width: 28, height: 14, 'aria-hidden': 'true'},
      s('rect', {width: 28, height: 14, fill: 'url(#' + uid + '-' + st + ')'})), ' ', st));
  }
  ul.append(h('li', null, s('svg', {width: 16, height: 16, 'aria-hidden': 'true'},
    s('path', {class: 'tl-next', d: 'M8,0 l7,8 l-7,8 l-7,-8 z'})), ' next transition'));
  ul.append(h('li', null, s('svg', {width: 12, height: 16, 'aria-hidden': 'true'},
    s('line', {class: 'tl-now', x1: 6, x2: 6, y1: 0, y2: 16})), ' now'));
  return ul;
}

// transitionsTable lists every bit's transitions as text.
export function transitionsTable(v) {
  const rows = [];
  for (const b of v.bits) {
    for (const tr of b.transitions) {
      const isNext = b.next_transition && tr.at === b.next_transition.at;
      const when = Date.parse(tr.at) <= Date.parse(v.at) ? 'past' : isNext ? 'next' : 'later';
      rows.push({
        attrs: isNext ? {class: 'next'} : null,
        cells: [b.sensitivity, fmtTime(tr.at), [stateBadge(tr.from), ' → ', stateBadge(tr.to)], when + ' (' + relative(tr.at, v.at) + ')'],
      });
    }
  }
  if (!rows.length) return h('p', null, 'No bit changes state from the data origin on.');
  return table('Transitions', ['Sensitivity', 'At', 'Change', 'When'], rows, {id: 'transitions'});
}
