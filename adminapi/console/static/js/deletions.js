// Deletions and wipes page (being built).

import {h} from './dom.js';

export async function render(main) {
  main.append(h('h1', null, 'Deletions and wipes'), h('p', null, 'This page is not built yet; use the admin API or gdprgate admin.'));
}
