// The gfla demo page: two skeleton editors (source over the photo, target in the output
// frame), a gallery, and the call to POST /api/v1/generate. Plain JavaScript, no build
// step, nothing loaded from elsewhere. Keypoints are kept in the photo's pixels (x, y);
// a missing joint is null here and [-1, -1] in the API.
"use strict";

(function () {
  const DISPLAY_WIDTH = 340; // CSS pixels of an editor canvas (at most)
  const DISPLAY_HEIGHT = 440;
  const HIT_RADIUS = 12; // CSS pixels around a joint that grab it
  // Photos larger than this (long side) are scaled down in the page before they are
  // sent: the model works at 256 pixels at most, and the request stays small.
  const MAX_SEND_SIDE = 2048;

  const state = {
    info: null,
    photo: null, // {img, blob, name, width, height}
    poseFile: null, // {blob, name}
    generation: 0,
  };

  const $ = (id) => document.getElementById(id);

  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function frameSize() {
    if (state.photo) return [state.photo.height, state.photo.width];
    return state.info ? state.info.image_size : [256, 256];
  }

  // ---- skeleton editor -------------------------------------------------------------

  class Editor {
    constructor(name, canvas, fieldset, options) {
      this.name = name;
      this.canvas = canvas;
      this.fieldset = fieldset;
      this.faded = options.faded;
      this.onEdit = options.onEdit || (() => {});
      this.points = [];
      this.selected = 0;
      this.drag = null;
      this.select = fieldset.querySelector(".joint-select");
      this.xInput = fieldset.querySelector(".joint-x");
      this.yInput = fieldset.querySelector(".joint-y");
      this.missing = fieldset.querySelector(".joint-missing");
      this.bind();
    }

    setup(count, names) {
      this.points = new Array(count).fill(null);
      this.select.replaceChildren(
        ...names.map((label, i) => new Option(`${i} ${label}`, String(i)))
      );
      this.refresh();
    }

    setPoints(points) {
      this.points = points.map((p) => (p && p[0] >= 0 && p[1] >= 0 ? [p[0], p[1]] : null));
      this.refresh();
    }

    scale() {
      const [h, w] = frameSize();
      return Math.min(DISPLAY_WIDTH / w, DISPLAY_HEIGHT / h);
    }

    toImage(event) {
      const rect = this.canvas.getBoundingClientRect();
      const s = this.scale();
      const [h, w] = frameSize();
      const x = (event.clientX - rect.left) / s;
      const y = (event.clientY - rect.top) / s;
      return [Math.min(Math.max(x, 0), w - 1), Math.min(Math.max(y, 0), h - 1)];
    }

    hit(event) {
      const rect = this.canvas.getBoundingClientRect();
      const s = this.scale();
      let best = -1;
      let bestDistance = HIT_RADIUS;
      this.points.forEach((p, i) => {
        if (!p) return;
        const d = Math.hypot(p[0] * s - (event.clientX - rect.left), p[1] * s - (event.clientY - rect.top));
        if (d <= bestDistance) {
          best = i;
          bestDistance = d;
        }
      });
      return best;
    }

    choose(index) {
      this.selected = index;
      this.refresh();
    }

    move(index, point) {
      this.points[index] = point;
      this.refresh();
      this.onEdit(this);
    }

    // The first missing joint after ``after`` (cyclically); ``after`` itself (or 0) when
    // none is missing.
    nextMissing(after) {
      const n = this.points.length;
      for (let k = 1; k <= n; k++) {
        const i = (after + k) % n;
        if (!this.points[i]) return i;
      }
      return Math.max(after, 0);
    }

    bind() {
      const c = this.canvas;
      c.addEventListener("pointerdown", (event) => {
        if (!state.photo) {
          setStatus("Choose a source photo first.", true);
          return;
        }
        c.focus();
        const index = this.hit(event);
        if (index >= 0) {
          this.selected = index;
          this.drag = index;
          c.setPointerCapture(event.pointerId);
          this.refresh();
        } else {
          // Clicking empty space places the chosen joint there, then moves on to the next
          // missing one, so a whole skeleton can be clicked in order.
          const placed = this.selected;
          this.move(placed, this.toImage(event));
          this.selected = this.nextMissing(placed);
          this.refresh();
        }
        event.preventDefault();
      });
      c.addEventListener("pointermove", (event) => {
        if (this.drag !== null) this.move(this.drag, this.toImage(event));
      });
      const end = (event) => {
        if (this.drag === null) return;
        this.drag = null;
        if (c.hasPointerCapture(event.pointerId)) c.releasePointerCapture(event.pointerId);
        this.refresh();
      };
      c.addEventListener("pointerup", end);
      c.addEventListener("pointercancel", end);
      c.addEventListener("keydown", (event) => {
        const p = this.points[this.selected];
        const step = event.shiftKey ? 10 : 1;
        const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
        if (moves[event.key] && p) {
          const [h, w] = frameSize();
          const [dx, dy] = moves[event.key];
          this.move(this.selected, [Math.min(Math.max(p[0] + dx, 0), w - 1), Math.min(Math.max(p[1] + dy, 0), h - 1)]);
        } else if (event.key === "Delete" || event.key === "Backspace") {
          this.move(this.selected, null);
        } else if (event.key === "Tab" && event.altKey) {
          this.choose((this.selected + 1) % this.points.length);
        } else {
          return;
        }
        event.preventDefault();
      });
      this.select.addEventListener("change", () => this.choose(Number(this.select.value)));
      const typed = () => {
        const x = parseFloat(this.xInput.value);
        const y = parseFloat(this.yInput.value);
        if (Number.isFinite(x) && Number.isFinite(y) && x >= 0 && y >= 0) this.move(this.selected, [x, y]);
      };
      this.xInput.addEventListener("change", typed);
      this.yInput.addEventListener("change", typed);
      this.missing.addEventListener("change", () => {
        if (this.missing.checked) {
          this.move(this.selected, null);
        } else {
          const [h, w] = frameSize();
          this.move(this.selected, [w / 2, h / 2]);
        }
      });
    }

    refresh() {
      const info = state.info;
      if (!info) return;
      const names = info.keypoint_names;
      Array.from(this.select.options).forEach((option, i) => {
        option.textContent = `${i} ${names[i]}${this.points[i] ? "" : " (missing)"}`;
      });
      this.select.value = String(this.selected);
      const p = this.points[this.selected];
      this.xInput.value = p ? p[0].toFixed(1) : "";
      this.yInput.value = p ? p[1].toFixed(1) : "";
      this.xInput.disabled = this.yInput.disabled = !p;
      this.missing.checked = !p;
      this.draw();
    }

    draw() {
      const info = state.info;
      const [h, w] = frameSize();
      const s = this.scale();
      const cssW = Math.round(w * s);
      const cssH = Math.round(h * s);
      const ratio = window.devicePixelRatio || 1;
      const c = this.canvas;
      if (c.width !== Math.round(cssW * ratio) || c.height !== Math.round(cssH * ratio)) {
        c.width = Math.round(cssW * ratio);
        c.height = Math.round(cssH * ratio);
      }
      c.style.width = `${cssW}px`;
      c.style.height = `${cssH}px`;
      const g = c.getContext("2d");
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      g.clearRect(0, 0, cssW, cssH);
      if (state.photo) {
        g.globalAlpha = this.faded ? 0.25 : 1;
        g.drawImage(state.photo.img, 0, 0, cssW, cssH);
        g.globalAlpha = 1;
      }
      drawSkeleton(g, this.points, s, info, 3, 5);
      const p = this.points[this.selected];
      if (p) {
        g.lineWidth = 2;
        g.strokeStyle = "#fff";
        g.beginPath();
        g.arc(p[0] * s, p[1] * s, 8, 0, 2 * Math.PI);
        g.stroke();
        g.strokeStyle = "#000";
        g.beginPath();
        g.arc(p[0] * s, p[1] * s, 10, 0, 2 * Math.PI);
        g.stroke();
      }
    }
  }

  function rgb(colour) {
    return `rgb(${colour[0]}, ${colour[1]}, ${colour[2]})`;
  }

  // Limbs in the skeleton's colours (gfla_tf.data.visualize.limb_colour), then joints.
  function drawSkeleton(g, points, s, info, lineWidth, radius) {
    g.lineCap = "round";
    g.lineWidth = lineWidth;
    info.edges.forEach(([a, b], i) => {
      const pa = points[a];
      const pb = points[b];
      if (!pa || !pb) return;
      g.strokeStyle = rgb(info.edge_colours[i]);
      g.beginPath();
      g.moveTo(pa[0] * s, pa[1] * s);
      g.lineTo(pb[0] * s, pb[1] * s);
      g.stroke();
    });
    points.forEach((p, i) => {
      if (!p) return;
      g.fillStyle = rgb(info.joint_colours[i]);
      g.strokeStyle = "rgba(0, 0, 0, 0.6)";
      g.lineWidth = 1;
      g.beginPath();
      g.arc(p[0] * s, p[1] * s, radius, 0, 2 * Math.PI);
      g.fill();
      g.stroke();
    });
  }

  let source;
  let target;

  // The target follows the source until the user edits it (or picks a gallery pose).
  let targetEdited = false;

  function resetTarget() {
    targetEdited = false;
    target.setPoints(source.points.map((p) => (p ? [p[0], p[1]] : null)));
  }

  function mirrorTarget() {
    const [, w] = frameSize();
    const points = target.points.map((p) => (p ? [w - 1 - p[0], p[1]] : null));
    for (const [a, b] of state.info.mirror_pairs) {
      [points[a], points[b]] = [points[b], points[a]];
    }
    target.setPoints(points);
    targetEdited = true;
  }

  // Scales a pose from its frame [h, w] (null: already the photo's) to the photo's.
  function toPhotoFrame(points, frame) {
    const [h, w] = frameSize();
    const sy = frame ? h / frame[0] : 1;
    const sx = frame ? w / frame[1] : 1;
    return points.map((p) => (p[0] >= 0 && p[1] >= 0 ? [p[0] * sx, p[1] * sy] : null));
  }

  // ---- files -------------------------------------------------------------------------

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the browser cannot read this image"));
      img.src = url;
    });
  }

  function canvasBlob(canvas, type, quality) {
    return new Promise((resolve) => canvas.toBlob(resolve, type, quality));
  }

  async function loadPhoto(blob, name) {
    const formats = ["image/png", "image/jpeg", "image/webp"];
    if (!formats.includes(blob.type)) {
      setStatus(`${name}: not a PNG, JPEG or WebP image`, true);
      return;
    }
    let img;
    try {
      img = await loadImage(URL.createObjectURL(blob));
    } catch (err) {
      setStatus(`${name}: ${err.message}`, true);
      return;
    }
    const limits = state.info.limits;
    let send = blob;
    const long = Math.max(img.naturalWidth, img.naturalHeight);
    if (long > MAX_SEND_SIDE || blob.size > limits.image_bytes) {
      // Scaled in the page so that any photo can be used; keypoints then refer to the
      // scaled photo, which is also the size of the result.
      const k = Math.min(1, MAX_SEND_SIDE / long);
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(img.naturalWidth * k));
      canvas.height = Math.max(1, Math.round(img.naturalHeight * k));
      canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
      send = await canvasBlob(canvas, "image/jpeg", 0.92);
      img = await loadImage(URL.createObjectURL(send));
      setStatus(`${name} was scaled to ${canvas.width}x${canvas.height} to be sent.`);
    } else {
      setStatus(`Photo ${name}: ${img.naturalWidth}x${img.naturalHeight} pixels.`);
    }
    const previous = state.photo;
    state.photo = { img, blob: send, name, width: img.naturalWidth, height: img.naturalHeight };
    if (previous && (previous.width !== state.photo.width || previous.height !== state.photo.height)) {
      // Keypoints are in photo pixels: a photo of another size starts without a pose.
      source.setPoints(source.points.map(() => null));
      resetTarget();
    }
    $("source-hint").hidden = true;
    source.refresh();
    target.refresh();
  }

  async function loadPoseFile(blob, name, row) {
    state.poseFile = { blob, name };
    // A multi-row annotation CSV: by default, the row of the photo's file name.
    const wanted = row || (state.photo ? state.photo.name : "");
    const url = "/api/v1/keypoints" + (wanted ? `?name=${encodeURIComponent(wanted)}` : "");
    let response;
    try {
      response = await fetch(url, { method: "POST", body: blob });
    } catch (err) {
      setStatus(`${name}: ${err.message}`, true);
      return;
    }
    const body = await response.json();
    const rowSelect = $("pose-row");
    if (!response.ok) {
      if (body.names && body.names.length) {
        // Let the user choose the row.
        rowSelect.replaceChildren(new Option("choose a row…", ""), ...body.names.map((n) => new Option(n, n)));
        document.querySelectorAll(".pose-row").forEach((el) => (el.hidden = false));
        setStatus(`${name}: ${body.problem}`, true);
      } else {
        setStatus(`${name}: ${body.error}`, true);
      }
      return;
    }
    document.querySelectorAll(".pose-row").forEach((el) => (el.hidden = body.rows <= 1));
    if (body.rows > 1) {
      // The other rows stay a choice away.
      rowSelect.replaceChildren(...body.names.map((n) => new Option(n, n)));
      rowSelect.value = body.name;
    }
    source.setPoints(body.keypoints);
    source.selected = source.nextMissing(-1);
    resetTarget();
    setStatus(`Pose read from ${name}${body.name ? ` (row ${body.name})` : ""}.`);
  }

  function bindFiles() {
    // The inputs are cleared once read, so that choosing the same file again (after
    // another photo, say) is a change too; the status line names what was read.
    $("source-photo").addEventListener("change", async (event) => {
      const file = event.target.files[0];
      if (file) await loadPhoto(file, file.name);
      event.target.value = "";
    });
    $("source-pose").addEventListener("change", async (event) => {
      const file = event.target.files[0];
      if (file) await loadPoseFile(file, file.name);
      event.target.value = "";
    });
    $("pose-row").addEventListener("change", (event) => {
      if (state.poseFile && event.target.value) {
        loadPoseFile(state.poseFile.blob, state.poseFile.name, event.target.value);
      }
    });
    const zone = $("source-drop");
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", async (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      const files = Array.from(event.dataTransfer.files);
      // The photo first, so that a CSV's row can be found by the photo's name.
      for (const file of files.filter((f) => f.type.startsWith("image/"))) await loadPhoto(file, file.name);
      for (const file of files.filter((f) => !f.type.startsWith("image/"))) await loadPoseFile(file, file.name);
    });
  }

  // ---- gallery -----------------------------------------------------------------------

  function poseThumbnail(points, frame) {
    const [h, w] = frame || frameSize();
    const canvas = document.createElement("canvas");
    const s = 64 / w;
    canvas.width = 64;
    canvas.height = Math.round(h * s);
    const g = canvas.getContext("2d");
    g.fillStyle = "#fff";
    g.fillRect(0, 0, canvas.width, canvas.height);
    const present = points.map((p) => (p[0] >= 0 && p[1] >= 0 ? p : null));
    drawSkeleton(g, present, s, state.info, 2, 2);
    return canvas;
  }

  async function loadGallery() {
    const response = await fetch("/api/v1/gallery");
    const gallery = await response.json();
    if (gallery.poses.length) {
      const row = $("gallery").querySelector(".row");
      gallery.poses.forEach((pose) => {
        const button = document.createElement("button");
        button.type = "button";
        button.setAttribute("aria-label", `Target pose ${pose.name}`);
        button.title = pose.name;
        button.appendChild(poseThumbnail(pose.keypoints, pose.frame));
        button.addEventListener("click", () => {
          if (!state.photo) {
            setStatus("Choose a source photo first.", true);
            return;
          }
          target.setPoints(toPhotoFrame(pose.keypoints, pose.frame));
          targetEdited = true;
        });
        row.appendChild(button);
      });
      $("gallery").hidden = false;
    }
    if (gallery.samples.length) {
      const row = $("samples").querySelector(".row");
      gallery.samples.forEach((sample) => {
        const button = document.createElement("button");
        button.type = "button";
        button.title = sample.name;
        const img = document.createElement("img");
        img.src = `/api/v1/samples/${sample.index}`;
        img.alt = `Sample photo ${sample.name}`;
        button.appendChild(img);
        button.addEventListener("click", async () => {
          const blob = await (await fetch(img.src)).blob();
          await loadPhoto(blob, sample.name);
          source.setPoints(toPhotoFrame(sample.keypoints, sample.frame));
          resetTarget();
        });
        row.appendChild(button);
      });
      $("samples").hidden = false;
    }
  }

  // ---- generate ----------------------------------------------------------------------

  function dataUrl(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  const asApi = (points) => points.map((p) => (p ? [p[0], p[1]] : [-1, -1]));

  function panel(image, alt, caption) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `data:image/png;base64,${image}`;
    img.alt = alt;
    const text = document.createElement("figcaption");
    text.textContent = caption;
    figure.append(img, text);
    return figure;
  }

  async function generate() {
    if (!state.photo) {
      setStatus("Choose a source photo first.", true);
      return;
    }
    const button = $("generate");
    button.disabled = true;
    setStatus("Generating…");
    const start = performance.now();
    try {
      const body = JSON.stringify({
        image: await dataUrl(state.photo.blob),
        source_keypoints: asApi(source.points),
        target_keypoints: asApi(target.points),
      });
      const response = await fetch("/api/v1/generate", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body,
      });
      const result = await response.json();
      if (!response.ok) {
        setStatus(result.error || `HTTP ${response.status}`, true);
        return;
      }
      const total = performance.now() - start;
      const url = `data:image/png;base64,${result.image}`;
      const img = $("result");
      const s = source.scale();
      img.style.width = `${Math.round(result.size[1] * s)}px`;
      img.style.height = `${Math.round(result.size[0] * s)}px`;
      await new Promise((resolve) => {
        img.onload = resolve;
        img.onerror = resolve;
        img.src = url;
      });
      img.hidden = false;
      state.generation += 1;
      img.dataset.generation = String(state.generation);
      $("latency").textContent =
        `${result.size[1]}x${result.size[0]} pixels; model ${result.ms.toFixed(0)} ms, ` +
        `request ${total.toFixed(0)} ms`;
      const download = $("download");
      download.href = url;
      download.download = `${state.photo.name.replace(/\.[^.]*$/, "")}-gfla.png`;
      download.hidden = false;
      $("flows").replaceChildren(
        ...result.flows.map((f) => panel(f.image, `Flow field at scale ${f.scale}`, `scale ${f.scale}`))
      );
      $("masks").replaceChildren(
        ...result.masks.map((m) => panel(m.image, `Occlusion mask at scale ${m.scale}`, `scale ${m.scale}`))
      );
      $("flow-legend").src = `data:image/png;base64,${result.flow_legend}`;
      $("flow-caption").textContent =
        `Hue: the direction in which each output pixel's source lies (as from the legend's ` +
        `centre to its rim); full colour: ${result.flow_max.toFixed(1)} px in the photo; ` +
        `white: no motion.`;
      $("details").hidden = false;
      setStatus("Done.");
    } catch (err) {
      setStatus(`Generate failed: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
  }

  // ---- start -------------------------------------------------------------------------

  async function start() {
    try {
      state.info = await (await fetch("/api/v1/info")).json();
    } catch (err) {
      $("model-info").textContent = `Cannot reach the server: ${err.message}`;
      return;
    }
    const info = state.info;
    const [h, w] = info.image_size;
    $("model-info").textContent = `Model: ${info.model.path} (${info.model.format}, ${h}x${w}); gfla-tf ${info.version}`;
    source = new Editor("source", $("source-canvas"), document.querySelector('[data-editor="source"]'), {
      faded: false,
      onEdit: () => {
        if (!targetEdited) resetTarget();
      },
    });
    target = new Editor("target", $("target-canvas"), document.querySelector('[data-editor="target"]'), {
      faded: true,
      onEdit: () => {
        targetEdited = true;
      },
    });
    source.setup(info.num_keypoints, info.keypoint_names);
    target.setup(info.num_keypoints, info.keypoint_names);
    bindFiles();
    $("mirror").addEventListener("click", mirrorTarget);
    $("reset").addEventListener("click", resetTarget);
    $("generate").addEventListener("click", generate);
    document.body.dataset.ready = "true";
    await loadGallery();
  }

  start();
})();
