// The latent-space explorer: decodes codes in the browser with the run's own decoder weights.
// Data: the JSON in <script id="run-data"> (written by ppl_models/runs/explore.py). No library.
"use strict";

// ---- the decoder: the run's layers, computed in float64 from its float32 weights ----

function fromBase64(text, Type) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Type(bytes.buffer);
}

function prepareOps(ops) {
  for (const op of ops) {
    if (op.W) op.W = fromBase64(op.W, Float32Array);
    if (op.b) op.b = fromBase64(op.b, Float32Array);
  }
  return ops;
}

function linear(op, x) {  // y = W x + b, W [out, in]
  const y = new Float64Array(op.n_out);
  for (let o = 0; o < op.n_out; o++) {
    let s = op.b ? op.b[o] : 0;
    const row = o * op.n_in;
    for (let i = 0; i < op.n_in; i++) s += op.W[row + i] * x[i];
    y[o] = s;
  }
  return y;
}

function convTranspose(op, x, shape) {  // PyTorch ConvTranspose2d: W [in, out, k, k]
  const [cin, h, w] = shape, k = op.k, s = op.stride, p = op.padding, cout = op.n_out;
  const ho = (h - 1) * s - 2 * p + k, wo = (w - 1) * s - 2 * p + k;
  const y = new Float64Array(cout * ho * wo);
  for (let co = 0; co < cout; co++) y.fill(op.b ? op.b[co] : 0, co * ho * wo, (co + 1) * ho * wo);
  for (let ci = 0; ci < cin; ci++) {
    for (let iy = 0; iy < h; iy++) {
      for (let ix = 0; ix < w; ix++) {
        const v = x[(ci * h + iy) * w + ix];
        if (v === 0) continue;  // after a ReLU most inputs are zero
        for (let co = 0; co < cout; co++) {
          const wbase = ((ci * cout + co) * k) * k;
          for (let ky = 0; ky < k; ky++) {
            const oy = iy * s - p + ky;
            if (oy < 0 || oy >= ho) continue;
            for (let kx = 0; kx < k; kx++) {
              const ox = ix * s - p + kx;
              if (ox < 0 || ox >= wo) continue;
              y[(co * ho + oy) * wo + ox] += v * op.W[wbase + ky * k + kx];
            }
          }
        }
      }
    }
  }
  return [y, [cout, ho, wo]];
}

function conv(op, x, shape) {  // PyTorch Conv2d: W [out, in, k, k]
  const [cin, h, w] = shape, k = op.k, s = op.stride, p = op.padding, cout = op.n_out;
  const ho = Math.floor((h + 2 * p - k) / s) + 1, wo = Math.floor((w + 2 * p - k) / s) + 1;
  const y = new Float64Array(cout * ho * wo);
  for (let co = 0; co < cout; co++) {
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++) {
        let acc = op.b ? op.b[co] : 0;
        for (let ci = 0; ci < cin; ci++) {
          const wbase = ((co * cin + ci) * k) * k;
          for (let ky = 0; ky < k; ky++) {
            const iy = oy * s - p + ky;
            if (iy < 0 || iy >= h) continue;
            for (let kx = 0; kx < k; kx++) {
              const ix = ox * s - p + kx;
              if (ix < 0 || ix >= w) continue;
              acc += x[(ci * h + iy) * w + ix] * op.W[wbase + ky * k + kx];
            }
          }
        }
        y[(co * ho + oy) * wo + ox] = acc;
      }
    }
  }
  return [y, [cout, ho, wo]];
}

const ELEMENTWISE = {
  relu: (v) => (v > 0 ? v : 0),
  tanh: Math.tanh,
  softplus: (v) => (v > 20 ? v : Math.log1p(Math.exp(v))),  // PyTorch's threshold of 20
  sigmoid: (v) => 1 / (1 + Math.exp(-v)),
};

function decode(run, z, label) {
  // z: numbers [z_dim]; label: the class for a label-conditioned decoder. Returns Float64Array [C*H*W].
  let x = Float64Array.from(z);
  if (run.classes) {
    const input = new Float64Array(z.length + run.classes);
    input.set(x);
    input[z.length + label] = 1;
    x = input;
  }
  let shape = null;
  for (const op of run.decoder) {
    if (op.op === "linear") x = linear(op, x);
    else if (op.op === "reshape") shape = op.shape;
    else if (op.op === "conv_transpose") [x, shape] = convTranspose(op, x, shape);
    else if (op.op === "conv") [x, shape] = conv(op, x, shape);
    else x = x.map(ELEMENTWISE[op.op]);
  }
  return x;
}

// ---- drawing ----

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];

function drawImage(canvas, run, pixels, at = [0, 0], size = null) {
  // pixels: [C*H*W] in [0, 1], channel-major; drawn scaled to `size` (default: the canvas).
  const [c, h, w] = run.shape;
  const img = new ImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let ch = 0; ch < 3; ch++) {
      let v = pixels[(c === 3 ? ch : 0) * h * w + i];
      if (run.invert) v = 1 - v;
      img.data[4 * i + ch] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    img.data[4 * i + 3] = 255;
  }
  const tmp = document.createElement("canvas");
  tmp.width = w; tmp.height = h;
  tmp.getContext("2d").putImageData(img, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  const [sw, sh] = size || [canvas.width, canvas.height];
  ctx.drawImage(tmp, at[0], at[1], sw, sh);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ---- one run's panel ----

function makeRng(seed) {  // mulberry32, then Box-Muller: reproducible prior samples
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

class Panel {
  constructor(run, index, root, app) {
    this.run = run; this.index = index; this.app = app;
    this.codes = fromBase64(run.codes, Float32Array);
    this.images = fromBase64(run.images, Uint8Array);
    this.labels = run.labels ? fromBase64(run.labels, Uint8Array) : null;
    this.n = this.codes.length / run.z_dim;
    this.plane = run.planes[0];
    this.sliders = Object.fromEntries(run.attributes.map((a) => [a.name, 0]));
    this.label = 0;
    this.pinned = null;   // {z, test: index or null}
    this.second = null;   // the interpolation's other end
    this.rng = makeRng(1 + index);
    this.build(root);
    this.project();
    this.drawMap();
    this.pinTest(0);
  }

  build(root) {
    const r = this.run, px = 4 * Math.max(r.shape[1], r.shape[2]) > 140 ? 2 : 4;
    const imgSize = [r.shape[2] * px, r.shape[1] * px];
    this.panel = el("section", { class: "panel", "data-run": String(this.index) });
    this.panel.append(el("h2", {}, r.title), el("p", { class: "settings" }, r.description));
    this.map = el("canvas", { width: "380", height: "380", class: "map", title: "pointer: decode; click: pin; shift-click: the other end of the interpolation" });
    this.hover = el("canvas", { width: String(imgSize[0]), height: String(imgSize[1]), class: "hover" });
    this.pinView = el("canvas", { width: String(imgSize[0]), height: String(imgSize[1]), class: "pinned" });
    this.original = el("canvas", { width: String(imgSize[0]), height: String(imgSize[1]), class: "original" });
    const planeSelect = el("select", { class: "plane" });
    r.planes.forEach((p, i) => planeSelect.append(el("option", { value: String(i) }, p.name)));
    planeSelect.addEventListener("change", () => { this.plane = r.planes[+planeSelect.value]; this.project(); this.drawMap(); });
    const controls = el("div", { class: "controls" });
    if (r.planes.length > 1) controls.append(el("label", {}, "plane ", planeSelect));
    if (r.classes) {
      this.classSelect = el("select", { class: "class" });
      for (let k = 0; k < r.classes; k++) this.classSelect.append(el("option", { value: String(k) }, String(k)));
      this.classSelect.addEventListener("change", () => { this.label = +this.classSelect.value; this.refresh(); });
      controls.append(el("label", {}, "class y ", this.classSelect));
    }
    for (const a of r.attributes) {
      const input = el("input", { type: "range", min: "-3", max: "3", step: "0.25", value: "0", "data-attribute": a.name });
      const out = el("output", {}, "0");
      input.addEventListener("input", () => { this.sliders[a.name] = +input.value; out.textContent = input.value; this.refresh(); });
      controls.append(el("label", { class: "slider" }, `${a.name} `, input, " ", out));
    }
    const figure = (canvas, caption) => el("figure", {}, canvas, el("figcaption", {}, caption));
    const views = el("div", { class: "views" },
      figure(this.hover, "under the pointer"), figure(this.original, "pinned test image"),
      figure(this.pinView, "pinned code + attributes"));
    this.strip = el("canvas", { width: String(10 * imgSize[0] / 2), height: String(imgSize[1] / 2), class: "strip" });
    this.lattice = el("canvas", { width: "380", height: "380", class: "lattice" });
    this.samples = el("canvas", { width: String(8 * imgSize[0] / 2), height: String(2 * imgSize[1] / 2), class: "samples" });
    const sampleButton = el("button", { class: "sample" }, "new samples from the prior");
    sampleButton.addEventListener("click", () => this.drawSamples());
    const latticeButton = el("button", { class: "draw-lattice" }, "draw the lattice");
    latticeButton.addEventListener("click", () => this.drawLattice());
    this.panel.append(
      el("div", { class: "top" }, this.map, el("div", {}, views, controls)),
      el("h3", {}, "interpolation: pinned code to the shift-clicked one"), this.strip,
      el("h3", {}, "samples from the prior ", sampleButton), this.samples,
      el("h3", {}, "lattice over the plane ", latticeButton), this.lattice);
    root.append(this.panel);
    this.map.addEventListener("mousemove", (e) => this.onMove(e));
    this.map.addEventListener("click", (e) => this.onClick(e));
  }

  // plane coordinates (a, b) <-> codes: z = origin + a u + b v (u, v orthonormal)
  toCode(a, b) {
    const { origin, u, v } = this.plane;
    return origin.map((o, i) => o + a * u[i] + b * v[i]);
  }

  planeXY(z) {  // a code's coordinates on the plane: ((z - o) . u, (z - o) . v)
    const { origin, u, v } = this.plane;
    let a = 0, b = 0;
    for (let j = 0; j < z.length; j++) { a += (z[j] - origin[j]) * u[j]; b += (z[j] - origin[j]) * v[j]; }
    return [a, b];
  }

  project() {
    const { origin, u, v } = this.plane, d = this.run.z_dim;
    this.xy = new Float64Array(2 * this.n);
    // the foot of the prior's mean (0) on the plane, where its conditional on the plane is centred
    this.centre = [-origin.reduce((s, o, j) => s + o * u[j], 0), -origin.reduce((s, o, j) => s + o * v[j], 0)];
    const extent = this.run.circle ? 1.1 * (this.run.circle + Math.max(...this.centre.map(Math.abs))) : 0;
    const radii = [];
    for (let i = 0; i < this.n; i++) {
      let a = 0, b = 0;
      for (let j = 0; j < d; j++) {
        const c = this.codes[i * d + j] - origin[j];
        a += c * u[j]; b += c * v[j];
      }
      this.xy[2 * i] = a; this.xy[2 * i + 1] = b;
      radii.push(Math.max(Math.abs(a), Math.abs(b)));
    }
    radii.sort((p, q) => p - q);
    this.extent = Math.max(extent, 1.1 * radii[Math.floor(0.99 * (radii.length - 1))]);
  }

  toPixel(a, b) {
    const s = this.map.width / (2 * this.extent);
    return [(a + this.extent) * s, (this.extent - b) * s];
  }

  fromPixel(px, py) {
    const s = this.map.width / (2 * this.extent);
    return [px / s - this.extent, this.extent - py / s];
  }

  drawMap() {
    const ctx = this.map.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, this.map.width, this.map.height);
    for (let i = 0; i < this.n; i++) {
      const [x, y] = this.toPixel(this.xy[2 * i], this.xy[2 * i + 1]);
      ctx.fillStyle = this.labels ? PALETTE[this.labels[i] % 10] : "#555";
      ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
    }
    if (this.run.circle) {
      const [cx, cy] = this.toPixel(...this.centre), r = this.run.circle * this.map.width / (2 * this.extent);
      ctx.strokeStyle = "#000"; ctx.setLineDash([4, 3]); ctx.beginPath(); ctx.arc(cx, cy, r, 0, 2 * Math.PI); ctx.stroke();
      ctx.setLineDash([]);
    }
    for (const [mark, colour] of [[this.pinned, "#000"], [this.second, "#c00"]]) {
      if (!mark) continue;
      const [x, y] = this.toPixel(...this.planeXY(mark.z));  // on the plane shown now
      ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.strokeRect(x - 5, y - 5, 10, 10); ctx.lineWidth = 1;
    }
    ctx.fillStyle = "#000"; ctx.font = "11px sans-serif";
    ctx.fillText(`${this.plane.name}; square: +-${this.extent.toFixed(2)}`, 4, 12);
    if (this.labels) PALETTE.forEach((c, k) => { ctx.fillStyle = c; ctx.fillText(String(k), 4 + 12 * k, this.map.height - 4); });
  }

  nearestTest(a, b, pixels = 5) {
    const s = this.map.width / (2 * this.extent);
    let best = -1, bestD = (pixels / s) ** 2;
    for (let i = 0; i < this.n; i++) {
      const d = (this.xy[2 * i] - a) ** 2 + (this.xy[2 * i + 1] - b) ** 2;
      if (d < bestD) { best = i; bestD = d; }
    }
    return best;
  }

  eventPlane(e) {
    const rect = this.map.getBoundingClientRect();
    return this.fromPixel((e.clientX - rect.left) * this.map.width / rect.width,
                          (e.clientY - rect.top) * this.map.height / rect.height);
  }

  onMove(e) {
    const [a, b] = this.eventPlane(e);
    this.hoverCode = this.toCode(a, b);
    drawImage(this.hover, this.run, decode(this.run, this.hoverCode, this.label));
  }

  onClick(e) {
    const [a, b] = this.eventPlane(e), i = this.nearestTest(a, b);
    const mark = i >= 0 ? this.testMark(i) : { z: this.toCode(a, b), test: null };
    if (e.shiftKey) { this.second = mark; this.refresh(); } else if (i >= 0) this.app.pinTest(i); else this.pin(mark);
  }

  testMark(i) {
    const d = this.run.z_dim;
    return { z: Array.from(this.codes.subarray(i * d, (i + 1) * d)), test: i };
  }

  pinTest(i) {
    if (this.labels && this.classSelect) { this.label = this.labels[i]; this.classSelect.value = String(this.label); }
    this.pin(this.testMark(i));
  }

  pin(mark) { this.pinned = mark; this.refresh(); }

  pinnedCode() {  // the pinned code plus every attribute slider's multiple of its vector
    const z = this.pinned.z.slice();
    for (const a of this.run.attributes) {
      const t = this.sliders[a.name];
      for (let j = 0; j < z.length; j++) z[j] += t * a.vector[j];
    }
    return z;
  }

  refresh() {
    this.pinnedPixels = decode(this.run, this.pinnedCode(), this.label);
    drawImage(this.pinView, this.run, this.pinnedPixels);
    const o = this.original.getContext("2d");
    o.fillStyle = "#eee"; o.fillRect(0, 0, this.original.width, this.original.height);
    if (this.pinned.test !== null) {
      const D = this.run.shape.reduce((p, q) => p * q, 1), t = this.pinned.test;
      drawImage(this.original, this.run, Array.from(this.images.subarray(t * D, (t + 1) * D), (v) => v / 255));
    }
    this.drawStrip();
    this.drawMap();
  }

  drawStrip() {
    const ctx = this.strip.getContext("2d");
    ctx.fillStyle = "#eee"; ctx.fillRect(0, 0, this.strip.width, this.strip.height);
    if (!this.second) return;
    const w = this.strip.width / 10, A = this.pinned.z, B = this.second.z;
    for (let k = 0; k < 10; k++) {
      const t = k / 9, z = A.map((a, j) => (1 - t) * a + t * B[j]);
      drawImage(this.strip, this.run, decode(this.run, z, this.label), [k * w, 0], [w, this.strip.height]);
    }
  }

  drawSamples() {
    const cols = 8, rows = 2, w = this.samples.width / cols, h = this.samples.height / rows;
    const pool = this.run.prior_samples ? fromBase64(this.run.prior_samples, Float32Array) : null, d = this.run.z_dim;
    this.sampleCursor = this.sampleCursor || 0;
    for (let k = 0; k < cols * rows; k++) {
      let z;
      if (pool) {
        const m = this.sampleCursor++ % (pool.length / d);
        z = Array.from(pool.subarray(m * d, (m + 1) * d));
      } else z = Array.from({ length: d }, () => this.rng());
      drawImage(this.samples, this.run, decode(this.run, z, this.label), [(k % cols) * w, Math.floor(k / cols) * h], [w, h]);
    }
  }

  drawLattice() {
    const values = this.run.lattice || Array.from({ length: 12 }, (_, k) => -this.extent + (k + 0.5) * 2 * this.extent / 12);
    const n = values.length, w = this.lattice.width / n;
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < n; c++) {
        // the prior's quantiles around the foot of its mean on the plane, else the map's square
        const [a0, b0] = this.run.lattice ? this.centre : [0, 0];
        const z = this.toCode(a0 + values[c], b0 + values[n - 1 - r]);
        drawImage(this.lattice, this.run, decode(this.run, z, this.label), [c * w, r * w], [w, w]);
      }
    }
  }
}

// ---- the page ----

function start() {
  const data = JSON.parse(document.getElementById("run-data").textContent);
  for (const run of data.runs) prepareOps(run.decoder);
  const root = document.getElementById("panels");
  const app = { panels: [] };
  app.pinTest = (i) => {
    // the runs share their test images when they come from one data set: a pick pins it in each
    for (const p of app.panels) if (data.linked || p === app.current) p.pinTest(i);
  };
  data.runs.forEach((run, k) => {
    const panel = new Panel(run, k, root, app);
    panel.map.addEventListener("mousedown", () => { app.current = panel; });
    app.panels.push(panel);
  });
  for (const p of app.panels) p.drawSamples();
  // what the tests (and a curious reader, from the console) call
  window.explorer = {
    runs: data.runs,
    decode: (k, z, label = 0) => Array.from(decode(data.runs[k], z, label)),
    pinTest: (k, i) => app.panels[k].pinTest(i),
    pick: (k, i) => { app.current = app.panels[k]; app.pinTest(i); },  // as a click on a test code does
    pinnedTest: (k) => app.panels[k].pinned.test,
    pinSecond: (k, i) => { const p = app.panels[k]; p.second = p.testMark(i); p.refresh(); },
    pinnedOnMap: (k) => app.panels[k].planeXY(app.panels[k].pinned.z),  // the pinned mark's plane coordinates
    setPlane: (k, i) => { const p = app.panels[k]; p.plane = p.run.planes[i]; p.project(); p.drawMap(); },
    pinnedPixels: (k) => Array.from(app.panels[k].pinnedPixels),
    pinnedCode: (k) => app.panels[k].pinnedCode(),
    hoverCode: (k) => app.panels[k].hoverCode || null,
    ready: true,
  };
}

window.addEventListener("DOMContentLoaded", start);
