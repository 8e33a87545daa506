"use strict";
// The viewer's page: polls /api/run for live refresh, renders the gallery, an identity's timeline across
// cameras, search results, and plays the annotated video of a camera at an appearance.

const REFRESH_MS = 2000;
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
let state = { cameras: [], identities: [] };
let lastJson = "";
let selected = null;

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

function cameraColour(id) {
  const index = state.cameras.findIndex((c) => c.id === id);
  return COLOURS[(index < 0 ? 0 : index) % COLOURS.length];
}

function thumbs(identity, count) {
  return identity.thumbnails.slice(0, count).map((p) => el("img", { src: p, alt: "ID " + identity.global_id }));
}

function renderGallery() {
  const gallery = document.getElementById("gallery");
  gallery.replaceChildren(
    ...state.identities.map((identity) =>
      el("div", {
        class: "identity" + (identity.global_id === selected ? " selected" : ""),
        "data-global-id": identity.global_id,
        onclick: () => select(identity.global_id),
      }, [
        el("h3", { text: "ID " + identity.global_id + " " }, [el("span", { class: "muted", text: identity.cameras.join(", ") })]),
        ...thumbs(identity, 3),
      ])
    )
  );
  const cams = state.cameras.map((c) => c.id).join(", ");
  document.getElementById("counts").textContent = state.identities.length + " identities · cameras " + cams;
}

function timeline(identity) {
  const svgNs = "http://www.w3.org/2000/svg";
  const apps = identity.appearances;
  const start = Math.min(...apps.map((a) => a.start_time));
  const end = Math.max(...apps.map((a) => a.end_time));
  const span = Math.max(end - start, 1e-6);
  const cameras = state.cameras.map((c) => c.id).filter((c) => apps.some((a) => a.camera === c));
  const width = 460, left = 60, row = 22;
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("id", "timeline");
  svg.setAttribute("width", width);
  svg.setAttribute("height", 24 + row * cameras.length);
  cameras.forEach((camera, r) => {
    const label = document.createElementNS(svgNs, "text");
    label.setAttribute("x", 0);
    label.setAttribute("y", 18 + r * row + 12);
    label.setAttribute("font-size", "11");
    label.textContent = camera;
    svg.appendChild(label);
  });
  for (const a of apps) {
    const rect = document.createElementNS(svgNs, "rect");
    const r = cameras.indexOf(a.camera);
    rect.setAttribute("x", left + ((width - left - 10) * (a.start_time - start)) / span);
    rect.setAttribute("y", 18 + r * row);
    rect.setAttribute("width", Math.max(((width - left - 10) * (a.end_time - a.start_time)) / span, 3));
    rect.setAttribute("height", row - 6);
    rect.setAttribute("fill", cameraColour(a.camera));
    rect.setAttribute("class", "appearance");
    rect.setAttribute("data-camera", a.camera);
    rect.addEventListener("click", () => play(a));
    const title = document.createElementNS(svgNs, "title");
    title.textContent = `${a.camera} track ${a.local_track_id}: ${a.start_time.toFixed(1)}-${a.end_time.toFixed(1)} s`;
    rect.appendChild(title);
    svg.appendChild(rect);
  }
  const axis = document.createElementNS(svgNs, "text");
  axis.setAttribute("x", left);
  axis.setAttribute("y", 12);
  axis.setAttribute("font-size", "10");
  axis.textContent = `${start.toFixed(1)} s … ${end.toFixed(1)} s`;
  svg.appendChild(axis);
  return svg;
}

function renderDetail() {
  const detail = document.getElementById("detail");
  const identity = state.identities.find((i) => i.global_id === selected);
  if (!identity) return;
  detail.replaceChildren(
    el("h2", { text: "Identity " + identity.global_id }),
    el("div", {}, thumbs(identity, 8)),
    timeline(identity),
    el("ul", {}, identity.appearances.map((a) =>
      el("li", {}, [el("a", {
        href: "#", class: "appearance-link", "data-camera": a.camera,
        onclick: (e) => { e.preventDefault(); play(a); },
        text: `${a.camera} track ${a.local_track_id}: frames ${a.first_frame}-${a.last_frame} (${a.start_time.toFixed(1)}-${a.end_time.toFixed(1)} s)`,
      })])
    )),
  );
}

function select(globalId) {
  selected = globalId;
  renderGallery();
  renderDetail();
}

function play(appearance) {
  const camera = state.cameras.find((c) => c.id === appearance.camera);
  const player = document.getElementById("player");
  const caption = document.getElementById("player-caption");
  if (!camera || !camera.video) {
    caption.textContent = "the video of " + appearance.camera + " is not finished yet";
    return;
  }
  const at = camera.fps > 0 ? (appearance.first_frame - camera.start_frame) / camera.fps : appearance.start_time;
  const src = "video/" + encodeURIComponent(camera.id) + ".mp4";
  caption.textContent = `${camera.id} at ${at.toFixed(1)} s (preparing the video…)`;
  const seek = () => { player.currentTime = at; player.play().catch(() => {}); caption.textContent = `${camera.id} at ${at.toFixed(1)} s`; };
  if (player.getAttribute("src") !== src) {
    player.setAttribute("src", src);
    player.addEventListener("loadedmetadata", seek, { once: true });
    player.load();
  } else {
    seek();
  }
}

async function refresh() {
  try {
    const response = await fetch("api/run", { cache: "no-store" });
    const text = await response.text();
    if (text !== lastJson) {
      lastJson = text;
      state = JSON.parse(text);
      renderGallery();
      renderDetail();
    }
    document.getElementById("status").textContent = "run " + state.status;
    document.body.dataset.status = state.status;
    document.body.dataset.loaded = "true";
  } catch (err) {
    document.getElementById("status").textContent = "cannot reach the viewer: " + err;
  }
  setTimeout(refresh, REFRESH_MS);
}

async function search(event) {
  event.preventDefault();
  const form = new FormData();
  const photo = document.getElementById("photo").files[0];
  if (photo) form.append("image", photo);
  form.append("text", document.getElementById("text").value);
  form.append("camera", document.getElementById("cameras").value);
  const results = document.getElementById("results");
  const error = document.getElementById("search-error");
  error.textContent = "";
  results.replaceChildren(el("span", { class: "muted", text: "searching…" }));
  const response = await fetch("api/search", { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) {
    results.replaceChildren();
    error.textContent = body.error;
    return;
  }
  results.replaceChildren(
    ...body.hits.map((hit, n) =>
      el("div", { class: "hit", "data-global-id": hit.global_id, onclick: () => select(hit.global_id) }, [
        el("b", { text: `${n + 1}. ID ${hit.global_id}` }),
        el("span", { class: "similarity", text: hit.similarity.toFixed(3) }),
        el("span", { class: "muted", text: hit.cameras.join(", ") }),
        ...thumbs(hit, 2),
      ])
    )
  );
  if (!body.hits.length) results.replaceChildren(el("span", { class: "muted", text: "no identities found" }));
}

document.getElementById("search").addEventListener("submit", search);
refresh();
