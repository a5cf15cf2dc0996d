import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addressKey } from '../../server/http/address-key.ts';

test('IPv4 addresses count on their own, IPv4-mapped ones as the IPv4 address', () => {
  assert.equal(addressKey('203.0.113.7'), '203.0.113.7');
  assert.equal(addressKey('::ffff:203.0.113.7'), '203.0.113.7');
  assert.equal(addressKey('::FFFF:127.0.0.2'), '127.0.0.2');
});

test('IPv6 addresses count by their /64, however they are written', () => {
  const same = [
    '2001:db8:1:2::1',
    '2001:db8:1:2:ffff:ffff:ffff:ffff',
    '2001:0db8:0001:0002:0000:0000:0000:0009',
    '2001:DB8:1:2::a:b',
    '2001:db8:1:2::1%eth0',
    '2001:db8:1:2:0:0:192.0.2.1',
  ];
  assert.deepEqual(same.map(addressKey), Array<string>(same.length).fill('2001:db8:1:2::/64'));
  assert.equal(addressKey('2001:db8:1:3::1'), '2001:db8:1:3::/64');
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
  assert.equal(addressKey('fe80::1'), 'fe80:0:0:0::/64');
  assert.equal(addressKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64');
  assert.equal(addressKey('1:2:3::'), '1:2:3:0::/64');
});

test('a value that is no address (a forwarded header) counts as it is', () => {
  assert.equal(addressKey('unknown'), 'unknown');
  assert.equal(addressKey(''), '');
  assert.equal(addressKey('::ffff:999.0.0.1'), '::ffff:999.0.0.1');
});
