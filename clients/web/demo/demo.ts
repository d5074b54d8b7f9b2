/**
 * The demo page served at `/` by the web transport: live captions from the microphone, speech with
 * the spoken sentence highlighted, the voices, and the server's health. It uses the SDK exactly as
 * a page would (the build points this import at the shipped bundle, /web/voice-web.js).
 */
import {
  Code,
  ConnectError,
  createVoiceWebClient,
  type MicrophoneTranscription,
  openMicrophone,
  ServingStatus,
  sliceCodePoints,
  type TranscriptResult,
  type VoiceWebClient,
} from '../index.js';

const HEALTH_INTERVAL_MS = 5000;

const $ = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`#${id} is missing from the page`);
  return element as T;
};

const ui = {
  health: $('health'),
  mic: $<HTMLButtonElement>('mic'),
  listenState: $('listen-state'),
  meter: $('meter'),
  language: $<HTMLSelectElement>('language'),
  echoCancellation: $<HTMLInputElement>('echo-cancellation'),
  noiseSuppression: $<HTMLInputElement>('noise-suppression'),
  autoGain: $<HTMLInputElement>('auto-gain'),
  captions: $<HTMLOListElement>('captions'),
  text: $<HTMLTextAreaElement>('text'),
  voice: $<HTMLSelectElement>('voice'),
  speed: $<HTMLInputElement>('speed'),
  speedValue: $<HTMLOutputElement>('speed-value'),
  speak: $<HTMLButtonElement>('speak'),
  stopSpeaking: $<HTMLButtonElement>('stop-speaking'),
  speakState: $('speak-state'),
  spoken: $('spoken'),
  mouth: $('mouth'),
  connection: $<HTMLDetailsElement>('connection'),
  token: $<HTMLInputElement>('token'),
  message: $('message'),
};

// A token handed over in the URL's fragment (never sent to the server) or typed in; kept per tab.
const fragmentToken = new URLSearchParams(location.hash.slice(1)).get('token');
if (fragmentToken) {
  sessionStorage.setItem('cortex-voice-token', fragmentToken);
  history.replaceState(null, '', location.pathname + location.search);
}
ui.token.value = sessionStorage.getItem('cortex-voice-token') ?? '';

let client = makeClient();
function makeClient(): VoiceWebClient {
  const token = ui.token.value.trim();
  return createVoiceWebClient(token === '' ? {} : { token });
}
ui.token.addEventListener('change', () => {
  sessionStorage.setItem('cortex-voice-token', ui.token.value.trim());
  client = makeClient();
  void refreshHealth();
  void loadVoices();
});

function say(text: string, isError = false): void {
  ui.message.textContent = text;
  ui.message.classList.toggle('error', isError);
}

/** An error's message; a refused credential also opens the token field. */
function describe(error: unknown): string {
  const connectError = ConnectError.from(error);
  if (connectError.code === Code.Unauthenticated || connectError.code === Code.PermissionDenied) {
    ui.connection.open = true;
  }
  return connectError.rawMessage;
}

// ---- Health -------------------------------------------------------------------------------------

async function refreshHealth(): Promise<void> {
  const items = Array.from(ui.health.querySelectorAll<HTMLElement>('.status'));
  await Promise.all(
    items.map(async (item) => {
      const service = item.dataset.service ?? '';
      try {
        const { status } = await client.health.check({ service }, { timeoutMs: 4000 });
        item.dataset.status = status === ServingStatus.SERVING ? 'serving' : 'not-serving';
        item.title = ServingStatus[status] ?? String(status);
      } catch (error) {
        item.dataset.status = 'unreachable';
        item.title = describe(error);
      }
    }),
  );
}

// ---- Voices -------------------------------------------------------------------------------------

async function loadVoices(): Promise<void> {
  try {
    const { voices } = await client.synthesis.listVoices({});
    const selected = ui.voice.value;
    ui.voice.replaceChildren(
      ...voices.map((voice) => {
        const option = new Option(`${voice.name} · ${voice.language}`, voice.id);
        option.title = `${voice.id} (${voice.engine}, ${voice.sampleRateHz} Hz)`;
        if (voice.id === selected || (selected === '' && voice.isDefault)) option.selected = true;
        return option;
      }),
    );
  } catch (error) {
    say(`Voices could not be listed: ${describe(error)}`, true);
  }
}

// ---- Listen -------------------------------------------------------------------------------------

let listening: { transcription: MicrophoneTranscription; stream: MediaStream } | undefined;

ui.mic.addEventListener('click', () => {
  if (listening === undefined) void startListening();
  else void stopListening();
});

function setListening(on: boolean, state: string): void {
  ui.mic.setAttribute('aria-pressed', String(on));
  ui.mic.querySelector('.label')!.textContent = on ? 'Stop listening' : 'Start listening';
  ui.listenState.textContent = state;
  for (const input of [ui.echoCancellation, ui.noiseSuppression, ui.autoGain, ui.language])
    input.disabled = on;
  if (!on) ui.meter.style.width = '0';
}

async function startListening(): Promise<void> {
  ui.mic.disabled = true;
  try {
    const stream = await openMicrophone({
      echoCancellation: ui.echoCancellation.checked,
      noiseSuppression: ui.noiseSuppression.checked,
      autoGainControl: ui.autoGain.checked,
    });
    const transcription = client.transcribeMicrophone(stream, {
      config: { language: ui.language.value, interimResults: true },
      onLevel: (level) => {
        ui.meter.style.width = `${Math.min(100, Math.sqrt(level) * 180).toFixed(1)}%`;
      },
    });
    listening = { transcription, stream };
    ui.captions.querySelector('.empty')?.remove();
    setListening(true, 'Listening…');
    say('');
    void showEvents(transcription, stream);
  } catch (error) {
    say(`The microphone could not be opened: ${describe(error)}`, true);
  } finally {
    ui.mic.disabled = false;
  }
}

async function stopListening(): Promise<void> {
  const current = listening;
  if (current === undefined) return;
  ui.mic.disabled = true;
  ui.listenState.textContent = 'Finishing…';
  try {
    await current.transcription.stop();
  } catch (error) {
    say(describe(error), true);
  } finally {
    ui.mic.disabled = false;
  }
}

async function showEvents(transcription: MicrophoneTranscription, stream: MediaStream): Promise<void> {
  const rows = new Map<number, HTMLLIElement>();
  const rowOf = (utterance: number) => {
    let row = rows.get(utterance);
    if (row === undefined) {
      row = document.createElement('li');
      row.className = 'caption interim';
      row.dataset.utterance = String(utterance);
      row.append(span('time'), span('text'), span('latency'));
      rows.set(utterance, row);
      ui.captions.append(row);
    }
    return row;
  };
  try {
    for await (const response of transcription) {
      const event = response.event;
      if (event.case === 'speechStarted') {
        const row = rowOf(event.value.utteranceIndex);
        if (row.classList.contains('interim')) setText(row, '…', event.value.offsetMs);
      } else if (event.case === 'result') {
        showResult(rowOf(event.value.utteranceIndex), event.value, transcription.startedAt);
      }
      ui.captions.scrollTop = ui.captions.scrollHeight;
    }
    ui.listenState.textContent = 'Microphone off';
  } catch (error) {
    say(describe(error), true);
    ui.listenState.textContent = 'Stopped';
  } finally {
    for (const track of stream.getTracks()) track.stop();
    listening = undefined;
    setListening(false, ui.listenState.textContent ?? '');
    for (const row of rows.values()) if (row.classList.contains('interim')) row.remove();
  }
}

function showResult(row: HTMLLIElement, result: TranscriptResult, startedAt: number | undefined): void {
  setText(row, result.text.trim() || '(nothing recognised)', result.startMs, result.endMs);
  if (!result.isFinal) return;
  const shownAt = performance.timeOrigin + performance.now();
  row.classList.replace('interim', 'final');
  row.dataset.startMs = String(result.startMs);
  row.dataset.endMs = String(result.endMs);
  row.dataset.shownAt = String(shownAt);
  if (startedAt !== undefined) {
    ui.captions.dataset.startedAt = String(startedAt);
    const latency = Math.round(shownAt - (startedAt + result.endMs));
    const cell = row.querySelector('.latency')!;
    cell.textContent = `final in ${latency} ms`;
    cell.setAttribute('title', 'From the end of the utterance to its final on screen');
  }
}

function setText(row: HTMLLIElement, text: string, startMs: number, endMs?: number): void {
  row.querySelector('.time')!.textContent =
    endMs === undefined ? clock(startMs) : `${clock(startMs)} – ${clock(endMs)}`;
  row.querySelector('.text')!.textContent = text;
}

function clock(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  const seconds = ((ms % 60_000) / 1000).toFixed(1).padStart(4, '0');
  return `${minutes}:${seconds}`;
}

function span(className: string): HTMLSpanElement {
  const element = document.createElement('span');
  element.className = className;
  return element;
}

// ---- Speak --------------------------------------------------------------------------------------

let speaking: AbortController | undefined;

ui.speed.addEventListener('input', () => {
  ui.speedValue.textContent = `${Number(ui.speed.value).toFixed(1)}×`;
});

ui.speak.addEventListener('click', () => void speakText());
// Stop is a barge-in: playback stops and speak() resolves with what was heard.
ui.stopSpeaking.addEventListener('click', () => speaking?.abort());

async function speakText(): Promise<void> {
  const text = ui.text.value.trim();
  if (text === '') return;
  speaking?.abort();
  const controller = new AbortController();
  speaking = controller;
  ui.speak.disabled = true;
  ui.stopSpeaking.disabled = false;
  ui.speakState.textContent = 'Synthesizing…';
  highlight(text, 0, 0);
  // Voices with timing (eSpeak, Kokoro) mark each word as it is heard; others the sentence.
  let timed = false;
  try {
    const result = await client.speak(text, {
      voice: ui.voice.value,
      speed: Number(ui.speed.value),
      stopSignal: controller.signal,
      onChunk: (chunk) => {
        ui.speakState.textContent = 'Speaking…';
        if (!timed) highlight(text, chunk.textSpan.start, chunk.textSpan.end);
      },
      onWord: (word) => {
        timed = true;
        highlight(text, word.textSpan.start, word.textSpan.end);
      },
      onViseme: (viseme) => {
        ui.mouth.textContent = viseme.oculusViseme;
        ui.mouth.dataset.viseme = String(viseme.visemeId);
      },
    });
    ui.mouth.textContent = 'sil';
    if (result.interrupted) {
      ui.speakState.textContent = `Stopped; heard: “${result.heard.text}”`;
      highlight(text, 0, result.heard.end);
    } else {
      ui.speakState.textContent = `Spoke ${result.duration.toFixed(1)} s in ${result.chunks} chunk${result.chunks === 1 ? '' : 's'}`;
      highlight(text, 0, 0);
    }
  } catch (error) {
    ui.mouth.textContent = 'sil';
    if (controller.signal.aborted) ui.speakState.textContent = 'Stopped';
    else {
      ui.speakState.textContent = 'Failed';
      say(describe(error), true);
    }
  } finally {
    if (speaking === controller) speaking = undefined;
    ui.speak.disabled = false;
    ui.stopSpeaking.disabled = speaking === undefined;
  }
}

/** Shows `text` with the code points [start, end) marked as being spoken. */
function highlight(text: string, start: number, end: number): void {
  const spoken = sliceCodePoints(text, start, end);
  // The span may carry the space before the sentence; it stays outside the mark.
  const lead = spoken.length - spoken.trimStart().length;
  const before = document.createElement('span');
  before.className = 'said';
  before.textContent = sliceCodePoints(text, 0, start) + spoken.slice(0, lead);
  const mark = document.createElement('mark');
  mark.textContent = spoken.slice(lead);
  const after = sliceCodePoints(text, end === 0 ? 0 : end);
  ui.spoken.replaceChildren(before, end > start ? mark : '', after);
  ui.spoken.classList.toggle('active', end > start);
}

// ---- Start --------------------------------------------------------------------------------------

highlight(ui.text.value.trim(), 0, 0);
ui.text.addEventListener('input', () => {
  if (speaking === undefined) highlight(ui.text.value.trim(), 0, 0);
});
void refreshHealth();
setInterval(() => void refreshHealth(), HEALTH_INTERVAL_MS);
void loadVoices();
