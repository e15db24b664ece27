// The settings page: reads and saves the host's settings file through the JSON routes,
// shows what the engine offers and holds, previews a voice. No framework, no build step.
"use strict";

const query = new URLSearchParams(location.search);
const configId = query.get("config") || "qwen3_tts_default";
// A server reachable beyond loopback needs its token on every /api call: the page sends the
// one it was opened with (http://HOST:PORT/?token=...), never anything else.
const token = query.get("token");
const $ = (id) => document.getElementById(id);
let provider = null;
let acceleration = null; // the engine's AccelerationStatus, from its capabilities
let speakerTouched = false; // Speaker is saved only when the user picked one on this page
const QUICK_FRAMES = 50; // 12.5 frames per second: 4 seconds

function api(url, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(url, { ...options, headers });
}

async function getJson(url, options) {
  const response = await api(url, options);
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw body && body.code ? body : { code: `http_${response.status}`, detail: text || response.statusText };
  }
  return body;
}

function option(value, label) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = label || value;
  return element;
}

function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map((v) => option(v)));
  const wanted = String(chosen ?? "auto").trim().toLowerCase();
  const match = values.find((v) => v.toLowerCase() === wanted);
  select.value = match || values[0];
}

function fillDevices(acceleration, chosen) {
  const select = $("device");
  const options = [option("auto", "auto (GPU when usable, else CPU)"), option("cpu", "cpu")];
  for (const gpu of acceleration.gpus) {
    const gib = (gpu.total_memory_bytes / 2 ** 30).toFixed(1);
    options.push(option(`cuda:${gpu.index}`, `cuda:${gpu.index} — ${gpu.name}, ${gib} GiB`));
  }
  options.push(option("other", "other…"));
  select.replaceChildren(...options);
  const wanted = String(chosen ?? "auto").trim().toLowerCase() || "auto";
  const known = options.some((o) => o.value === wanted && o.value !== "other");
  select.value = known ? wanted : "other";
  $("device-other").value = known ? "" : chosen;
  $("device-other").hidden = known;
}

function showAcceleration(acceleration) {
  const note = acceleration.supported
    ? `GPU acceleration available: ${acceleration.gpus.map((g) => g.name).join(", ")}`
    : `No usable GPU here (${acceleration.reasons.join(", ")}): auto runs on the CPU.`;
  const cpu = acceleration.extras?.cpu;
  const extras = [
    `flash_attn ${acceleration.flash_attn_available ? "installed" : "not installed"}`,
    `cuda_graphs ${acceleration.extras?.cuda_graphs?.available ? "installed" : "not installed"}`,
  ];
  if (cpu) {
    let line = `CPU ${cpu.capability}, ${cpu.bf16 ? "bf16 native" : "no native bf16"}`;
    if ("int8" in cpu) {
      const features = (cpu.int8_features || []).join(", ");
      line += cpu.int8 ? `, int8 kernels${features ? ` (${features})` : ""}` : ", no int8 kernels";
    }
    extras.push(line);
  }
  $("acceleration").textContent = `${note} · ${extras.join(" · ")}`;
}

// The Device chosen on the page (not yet saved): auto for detection, and whether it runs on
// the CPU (cpu, or auto on a machine without a usable GPU).
function chosenDevice() {
  const picked = $("device").value === "other" ? $("device-other").value.trim().toLowerCase() : $("device").value;
  const device = ["", "auto", "default"].includes(picked) ? "auto" : picked;
  return { device, onCpu: device === "cpu" || (device === "auto" && !acceleration?.supported) };
}

// What the Precision choice means on this machine's CPU (the engine's AccelerationStatus
// extras.cpu): bf16 suggested where the CPU computes it natively and the work is batched
// (not beside int8, which is no faster with bf16); a choice the engine would refuse here is
// said before Save.
function showPrecisionHint() {
  const hint = $("precision-hint");
  const cpu = acceleration?.extras?.cpu;
  const { device, onCpu } = chosenDevice();
  const int8 = $("quantization").value.toLowerCase() === "int8";
  const precision = $("precision").value.toLowerCase();
  const half = ["bf16", "bfloat16", "fp16", "float16"].includes(precision);
  const batch = $("batch-size").value.trim().toLowerCase() || "auto";
  const batched = batch === "auto" || Number(batch) > 1;
  let text = "";
  if (device === "mps" && half) {
    text = "On mps the engine runs fp32 only (half precision is refused there). Choose auto.";
  } else if (onCpu && cpu) {
    if (precision === "bf16" || precision === "bfloat16") {
      text = cpu.bf16
        ? "bf16 on this CPU: experimental until heard on real weights (the codec stays fp32). Preview one text with one seed in auto and in bf16 to compare."
        : "This CPU does not compute bfloat16 natively (no AMX or AVX512-BF16): the engine refuses bf16 here. Choose auto.";
    } else if (precision === "fp16" || precision === "float16") {
      text = "fp16 on the CPU is refused (slower than fp32). Choose auto" + (cpu.bf16 ? " or bf16." : ".");
    } else if (cpu.bf16 && batched && !int8 && !int8Advised(cpu)) {
      text = `This CPU computes bfloat16 natively (${cpu.bf16_features.join(", ")}): bf16 makes batched dubbing faster than fp32 (experimental; the codec stays fp32).`;
    }
  }
  hint.textContent = text;
  hint.hidden = !text;
}

// Whether the engine advises int8 on this CPU (as doctor does): where its int8 kernels run
// with AVX512-VNNI, the kind of CPU it was measured on; then int8, not bf16, is the suggestion.
function int8Advised(cpu) {
  return Boolean(cpu?.int8 && (cpu.int8_features || []).includes("avx512_vnni"));
}

// What the Quantization choice means here: int8 runs only on the CPU, and only on one with
// int8 kernels (extras.cpu.int8); the engine refuses it elsewhere, said before Save. On a CPU
// that has them, int8 is suggested for faster previews and dubs.
function showQuantizationHint() {
  const hint = $("quantization-hint");
  const cpu = acceleration?.extras?.cpu;
  const { device, onCpu } = chosenDevice();
  const int8 = $("quantization").value.toLowerCase() === "int8";
  const precision = $("precision").value.toLowerCase();
  let text = "";
  if (int8 && !onCpu) {
    const where = device === "auto" ? "a GPU (auto picks one here)" : device;
    text = `int8 runs only on the CPU: the engine refuses it on ${where}. Choose auto, or Device cpu.`;
  } else if (onCpu && cpu && "int8" in cpu) {
    if (int8 && !cpu.int8) {
      text = "This CPU has no int8 kernels torch can use: the engine refuses int8 here. Choose auto.";
    } else if (int8) {
      text =
        "int8 weights: about 2x faster than bf16 and 4x fp32 for one preview on the CPU (experimental until heard on real weights; the codec stays fp32). Preview one text with one seed both ways to compare.";
      if (["bf16", "bfloat16"].includes(precision)) text += " With int8, bf16 is no faster than fp32: Precision auto is enough.";
    } else if (int8Advised(cpu) && $("quantization").value.toLowerCase() === "auto") {
      text = "This CPU runs int8 layers: Quantization int8 makes CPU previews and dubs faster (experimental).";
    }
  }
  hint.textContent = text;
  hint.hidden = !text;
}

function showHints() {
  showPrecisionHint();
  showQuantizationHint();
}

function showModels(models) {
  const rows = models.map((m) => {
    const row = document.createElement("tr");
    const state = m.valid ? "ready" : m.present ? `incomplete: ${m.missing.join(", ")}` : "not downloaded";
    for (const text of [m.key + (m.configured ? " (selected)" : ""), m.kind ?? "?", m.size ?? "?", m.local_path ?? "", state]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    row.lastChild.className = m.valid ? "ok" : "bad";
    return row;
  });
  $("models").querySelector("tbody").replaceChildren(...rows);
}

async function showVoices(models, extra) {
  // A built-in speaker for speaker models, a saved voice (the library) for cloning models.
  const chosen = models.find((m) => m.configured);
  const select = $("voice");
  if (chosen && chosen.kind === "base") {
    const saved = await getJson("/api/tts/voices");
    select.replaceChildren(
      option("", saved.length ? "choose a saved voice" : "no saved voice yet (POST /api/tts/voices)"),
      ...saved.map((v) => option(`saved:${v.id}`, `${v.name} (${v.duration_s} s)`)),
    );
    select.disabled = saved.length === 0;
    return;
  }
  const speakers = chosen ? chosen.speakers : [];
  select.replaceChildren(option("", "the model's own voice"), ...speakers.map((s) => option(s)));
  const stored = String(extra.Speaker ?? "").toLowerCase();
  select.value = speakers.find((s) => s.toLowerCase() === stored) ?? "";
  select.disabled = speakers.length === 0;
}

async function refreshStatus() {
  const badge = $("badge");
  try {
    const statuses = await getJson("/api/tts/status");
    const status = statuses.find((s) => s.provider === provider) || statuses[0];
    if (!status) {
      badge.dataset.state = "error";
      badge.textContent = "no engine";
    } else if (status.last_error) {
      badge.dataset.state = "error";
      badge.textContent = `engine: ${status.last_error.code}` + (status.loaded ? ` (still on ${status.device})` : "");
    } else if (status.loaded) {
      badge.dataset.state = "loaded";
      const int8 = status.quantization === "int8" ? " + int8 weights" : "";
      badge.textContent = `engine: ${status.device}, ${status.dtype}${int8}, ${status.backend}`;
    } else {
      badge.dataset.state = "idle";
      badge.textContent = "engine: nothing loaded";
    }
  } catch (error) {
    badge.dataset.state = "error";
    badge.textContent = `engine: ${error.code}`;
  }
}

async function load() {
  const settings = await getJson("/api/tts/settings");
  const config = settings.configs[configId];
  provider = config.provider;
  const extra = config.extra_params || {};
  $("config-name").textContent = `${configId} (${provider})`;
  const engines = await getJson(`/api/tts/engines?config_id=${encodeURIComponent(configId)}`);
  const caps = engines.find((c) => c.provider === provider);
  const properties = caps.settings_schema.properties || {};
  const choices = (key) => properties[key]?.enum || [properties[key]?.default ?? "auto"];
  fillDevices(caps.acceleration, extra.Device);
  fillSelect($("precision"), choices("Precision"), extra.Precision);
  fillSelect($("quantization"), choices("Quantization"), extra.Quantization);
  fillSelect($("attention"), choices("Attention"), extra.Attention);
  fillSelect($("backend"), choices("Backend"), extra.Backend);
  $("batch-size").value = extra.BatchSize ?? "auto";
  acceleration = caps.acceleration;
  showAcceleration(caps.acceleration);
  showHints();
  showModels(caps.models);
  await showVoices(caps.models, extra);
  await refreshStatus();
}

function chosenSettings() {
  const device = $("device").value === "other" ? $("device-other").value.trim() : $("device").value;
  const batch = $("batch-size").value.trim();
  const settings = {
    Device: device || "auto",
    Precision: $("precision").value,
    Quantization: $("quantization").value,
    Attention: $("attention").value,
    Backend: $("backend").value,
    BatchSize: batch === "" ? null : batch,
  };
  const picked = $("voice").value;
  if (speakerTouched && !picked.startsWith("saved:")) settings.Speaker = picked || null;
  return settings;
}

function showError(error) {
  // A server error is {code, detail, hint}; a failure in the page (network, a bug) is an Error.
  $("error-code").textContent = error.code ?? error.name ?? "error";
  $("error-detail").textContent = error.detail ?? error.message ?? String(error);
  $("error-hint").textContent = error.hint || "";
  $("error").hidden = false;
}

async function save() {
  // Returns the settings as saved (the preview's decision line describes those).
  $("error").hidden = true;
  $("saved").textContent = "";
  const settings = chosenSettings();
  await getJson(`/api/tts/settings/${encodeURIComponent(configId)}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ extra_params: settings }),
  });
  $("saved").textContent = "saved";
  return settings;
}

function clearAudio() {
  const audio = $("audio");
  if (audio.src) URL.revokeObjectURL(audio.src);
  audio.removeAttribute("src");
  audio.load();
  audio.hidden = true;
}

let sharedContext = null;
let playing = []; // the last preview's scheduled sources: a new preview stops them

function audioContext() {
  sharedContext = sharedContext || new AudioContext();
  sharedContext.resume();
  return sharedContext;
}

// A streamed preview: raw 16-bit PCM (X-TTS-Stream: pcm_s16le) played through Web Audio as it
// arrives, each chunk scheduled right after the one before; kept to make a WAV to play again.
async function playStream(response, context, started) {
  const rate = Number(response.headers.get("X-TTS-Sample-Rate"));
  const reader = response.body.getReader();
  const parts = [];
  let carry = new Uint8Array(0); // an odd byte waits for its other half
  let at = 0;
  let firstAudioS = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const bytes = new Uint8Array(carry.length + value.length);
    bytes.set(carry);
    bytes.set(value, carry.length);
    const whole = bytes.length - (bytes.length % 2);
    carry = bytes.slice(whole);
    if (!whole) continue;
    const samples = new Int16Array(bytes.buffer.slice(0, whole));
    parts.push(samples);
    if (firstAudioS === null) firstAudioS = (performance.now() - started) / 1000;
    const buffer = context.createBuffer(1, samples.length, rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 32768;
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    playing.push(source);
    at = Math.max(at, context.currentTime + 0.02);
    source.start(at);
    at += buffer.duration;
  }
  return { parts, rate, firstAudioS };
}

function wavBlob(parts, rate) {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const view = new DataView(new ArrayBuffer(44));
  const text = (offset, value) => [...value].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + length * 2, true);
  text(8, "WAVEfmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, length * 2, true);
  return new Blob([view, ...parts], { type: "audio/wav" });
}

async function preview() {
  const button = $("preview");
  button.disabled = true;
  $("save").disabled = true;
  $("busy").hidden = false;
  $("decision").hidden = true;
  clearAudio();
  for (const source of playing) source.stop();
  playing = [];
  const context = audioContext(); // asked for in the click, so the browser lets it play
  const started = performance.now();
  try {
    const saved = await save();
    const picked = $("voice").value;
    const savedId = picked.startsWith("saved:") ? picked.slice("saved:".length) : null;
    const voice = picked && !savedId ? { speaker: picked } : null;
    const response = await api("/api/tts/preview/stream", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        text: $("text").value,
        config_id: configId,
        voice,
        voice_id: savedId,
        generation: $("quick").checked ? { max_new_tokens: QUICK_FRAMES, allow_cut: true } : null,
      }),
    });
    if (!response.ok) {
      showError(await response.json().catch(() => ({ code: "http_" + response.status, detail: "" })));
      return;
    }
    const h = (name) => response.headers.get("X-TTS-" + name);
    const detect = ["", "auto", "default"].includes(saved.Device.trim().toLowerCase());
    const source = detect ? "detected" : "config";
    const int8 = h("Quantization") === "int8" ? ", int8 weights" : "";
    const line = `device ${h("Device")} (${source}) · ${h("Dtype")} (codec ${h("Codec-Dtype")}${int8}) · ${h("Attention")} · backend ${h("Backend")}`;
    $("decision").textContent = `${line} · speaking…`;
    $("decision").hidden = false;
    let played;
    try {
      played = await playStream(response, context, started);
    } catch {
      showError({
        code: "stream_broken",
        detail: "the audio stopped before its end: the engine failed after the first chunk",
        hint: "Nothing was saved; the server's log says why. Preview again, or try another text.",
      });
      return;
    }
    const seconds = played.parts.reduce((sum, part) => sum + part.length, 0) / played.rate;
    if (played.firstAudioS === null) {
      showError({ code: "stream_broken", detail: "the stream carried no audio", hint: "Preview again." });
      return;
    }
    $("decision").textContent =
      `${line} · first audio ${played.firstAudioS.toFixed(2)} s` +
      ` (engine ${h("First-Chunk-Seconds")} s) · ${seconds.toFixed(2)} s of audio` +
      ` in ${played.parts.length} part(s) as they came`;
    $("decision").dataset.parts = String(played.parts.length);
    const audio = $("audio");
    audio.src = URL.createObjectURL(wavBlob(played.parts, played.rate));
    audio.hidden = false;
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
    $("save").disabled = false;
    $("busy").hidden = true;
    await refreshStatus();
  }
}

$("voice").addEventListener("change", () => {
  speakerTouched = true;
});
$("device").addEventListener("change", () => {
  $("device-other").hidden = $("device").value !== "other";
});
for (const id of ["device", "device-other", "precision", "quantization", "batch-size"]) {
  $(id).addEventListener("input", showHints);
}
$("settings").addEventListener("submit", (event) => {
  event.preventDefault();
  save().catch(showError);
});
$("preview").addEventListener("click", preview);
load().catch(showError);
