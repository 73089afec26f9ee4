// voxpipe console: plays a call's audio, sent as chunks of mono float samples at the call's rate ({rate, samples}),
// resampled (linear interpolation) to the AudioContext's rate. It starts once PREBUFFER seconds are queued, plays
// silence when the queue runs dry (an underrun, counted), and skips ahead when more than MAX_BUFFER seconds wait
// (a page that fell behind catches up instead of lagging for the rest of the call). Reports what it played.

const PREBUFFER = 0.06;
const MAX_BUFFER = 0.4;

class PcmPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunks = []; // queued chunks, oldest first
    this.pos = 0; // read position in chunks[0], in source samples (fractional)
    this.total = 0; // samples in the queued chunks
    this.rate = 8000;
    this.started = false;
    this.played = 0; // source samples played
    this.underruns = 0;
    this.lastReport = 0;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.reset) {
        this.chunks = [];
        this.pos = 0;
        this.total = 0;
        this.started = false;
        return;
      }
      this.rate = m.rate;
      this.chunks.push(m.samples);
      this.total += m.samples.length;
      const excess = this.queued() - MAX_BUFFER * this.rate;
      if (excess > 0) this.advance(excess + PREBUFFER * this.rate);
    };
  }

  queued() {
    return this.total - this.pos;
  }

  advance(n) {
    this.pos += n;
    while (this.chunks.length && this.pos >= this.chunks[0].length) {
      this.pos -= this.chunks[0].length;
      this.total -= this.chunks[0].length;
      this.chunks.shift();
    }
  }

  at(j) {
    for (const c of this.chunks) {
      if (j < c.length) return c[j];
      j -= c.length;
    }
    return undefined;
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const step = this.rate / sampleRate;
    for (let i = 0; i < out.length; i++) {
      if (!this.started) {
        if (this.queued() < PREBUFFER * this.rate) {
          out[i] = 0;
          continue;
        }
        this.started = true;
      }
      if (this.queued() < 2) {
        this.started = false;
        this.underruns++;
        out[i] = 0;
        continue;
      }
      const j = Math.floor(this.pos), frac = this.pos - j;
      const a = this.at(j), b = this.at(j + 1) ?? a;
      out[i] = a + (b - a) * frac;
      this.played += step;
      this.advance(step);
    }
    if (currentTime - this.lastReport > 0.25) {
      this.lastReport = currentTime;
      this.port.postMessage({
        played: Math.floor(this.played),
        buffered: this.queued() / this.rate,
        underruns: this.underruns,
      });
    }
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayer);
