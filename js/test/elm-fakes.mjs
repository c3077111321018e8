// Port-shaped fakes of an Elm app's `app.ports`, with Elm's semantics:
// an outgoing port calls its subscribers with each value the program
// sends; an incoming port takes values that Elm decodes as JSON, so the
// fake keeps what it was sent and checks that it is JSON-shaped.
import assert from 'node:assert/strict';

export function outgoingPort() {
  const subscribers = [];
  return {
    subscribe(fn) {
      subscribers.push(fn);
    },
    unsubscribe(fn) {
      const i = subscribers.indexOf(fn);
      if (i >= 0) subscribers.splice(i, 1);
    },
    /** What Elm does when the program runs `port value`. */
    elmSends(value) {
      for (const fn of subscribers.slice()) fn(value);
    },
    get subscriberCount() {
      return subscribers.length;
    },
  };
}

export function incomingPort() {
  const received = [];
  return {
    send(value) {
      assert.deepEqual(JSON.parse(JSON.stringify(value)), value, 'a port value must be JSON-shaped');
      received.push(value);
    },
    received,
    get last() {
      return received[received.length - 1];
    },
  };
}
