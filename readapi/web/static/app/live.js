// Live is the app's Server-Sent Events connection. The browser's EventSource
// reconnects by itself after a dropped connection and sends Last-Event-ID,
// so the server replays what was missed. When it gives up (an HTTP error, say
// while the server restarts), Live opens a new one after a back-off, resuming
// with ?last_event_id= from the last id it saw. Handlers must be idempotent:
// a resume may repeat an event already applied (messages are deduplicated by
// id by the views).

export class Live {
  /**
   * @param {string} url the stream's URL, with its access_token
   * @param {string[]} events the event names to listen to
   * @param {(name: string, data: any) => void} onEvent
   * @param {(state: 'connecting'|'live'|'offline', opened?: {fresh: boolean}) => void} onState
   */
  constructor(url, events, onEvent, onState) {
    this.url = url;
    this.events = events;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastId = '';
    this.failures = 0;
    this.timer = 0;
    this.es = null;
    this.stopped = false;
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    const resume = this.lastId;
    const url = resume ? `${this.url}&last_event_id=${encodeURIComponent(resume)}` : this.url;
    const es = new EventSource(url);
    this.es = es;
    this.onState('connecting');
    let first = true;
    es.onopen = () => {
      this.failures = 0;
      // A stream opened without a resume token starts now: what happened
      // before it must be read afresh. A resumed one replays what was missed.
      this.onState('live', { fresh: first && !resume });
      first = false;
    };
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        this.onState('offline');
        this.retry();
      } else {
        this.onState('connecting'); // the browser reconnects by itself
      }
    };
    for (const name of this.events) {
      es.addEventListener(name, (ev) => {
        if (ev.lastEventId) this.lastId = ev.lastEventId;
        let data = null;
        try {
          data = JSON.parse(ev.data);
        } catch {
          return;
        }
        this.onEvent(name, data);
      });
    }
  }

  retry() {
    this.es?.close();
    clearTimeout(this.timer);
    const delay = Math.min(30000, 1000 * 2 ** this.failures) * (0.75 + Math.random() / 2);
    this.failures++;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.es?.close();
  }
}
