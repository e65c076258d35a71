import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NEEDS, planInstall } from '../../../scripts/debian-deps.js';

test('does nothing when nothing is missing', () => {
  assert.deepEqual(planInstall([], { root: false, debian: false }), { action: 'none' });
});

test('installs what is missing as root on Debian, after refreshing the package lists', () => {
  assert.deepEqual(planInstall(['xfsprogs', 'e2fsprogs'], { root: true, debian: true }), {
    action: 'install',
    commands: [
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', '--no-install-recommends', 'xfsprogs', 'e2fsprogs'],
    ],
  });
});

test('prints the exact apt-get line and fails when not root', () => {
  const plan = planInstall(['xfsprogs'], { root: false, debian: true });
  assert.equal(plan.action, 'fail');
  assert.match(
    plan.action === 'fail' ? plan.message : '',
    /missing Debian packages xfsprogs \(this needs root\); run: sudo apt-get install -y --no-install-recommends xfsprogs$/,
  );
});

test('fails off Debian, naming the packages', () => {
  const plan = planInstall(['xfsprogs'], { root: true, debian: false });
  assert.equal(plan.action, 'fail');
  assert.match(
    plan.action === 'fail' ? plan.message : '',
    /this is not Debian.*run: apt-get install/,
  );
});

test('lists what the tests and the daemon need', () => {
  assert.ok(NEEDS.test?.some((need) => need.package === 'xfsprogs'));
  assert.ok(NEEDS.start?.some((need) => need.package === 'e2fsprogs'));
});
