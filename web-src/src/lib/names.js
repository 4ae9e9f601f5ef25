// Overlay names: readable proposals (adjective-noun-NN) and validation.

const ADJECTIVES = [
  "amber", "azure", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "curious",
  "daring", "eager", "fancy", "fluffy", "gentle", "glad", "golden", "happy", "humble", "jolly",
  "keen", "kind", "lively", "lucky", "mellow", "merry", "misty", "nimble", "noble", "polite",
  "proud", "quick", "quiet", "rapid", "royal", "rusty", "shiny", "silent", "silver", "smart",
  "snowy", "sunny", "swift", "tidy", "vivid", "warm", "wild", "witty", "young", "zesty",
];

const NOUNS = [
  "badger", "beaver", "bison", "cedar", "comet", "coral", "crane", "delta", "dolphin", "falcon",
  "fern", "finch", "fox", "gecko", "harbor", "heron", "island", "koala", "lagoon", "lark",
  "lemur", "lion", "lynx", "maple", "meadow", "moose", "nebula", "ocean", "otter", "owl",
  "panda", "pebble", "pine", "planet", "puffin", "quartz", "raven", "river", "robin", "salmon",
  "sparrow", "spruce", "tiger", "toucan", "tulip", "walrus", "willow", "wolf", "yak", "zebra",
];

export const NAME_MAX = 32;

function pick(list, rand) {
  return list[Math.min(list.length - 1, Math.floor(rand() * list.length))];
}

/** A readable free-name proposal such as "brave-otter-42". rand: () => [0,1). */
export function generateName(rand = Math.random) {
  const n = Math.min(99, Math.floor(rand() * 90) + 10);
  return pick(ADJECTIVES, rand) + "-" + pick(NOUNS, rand) + "-" + n;
}

/** An ephemeral guest name for embed button mode: guest-xxxxxx (base36). */
export function guestName(rand = Math.random) {
  let s = "";
  for (let i = 0; i < 6; i++) s += "0123456789abcdefghijklmnopqrstuvwxyz"[Math.floor(rand() * 36) % 36];
  return "guest-" + s;
}

/** Trims and lower-cases what the user typed as their name. */
export function normalizeName(input) {
  return String(input ?? "").trim().toLowerCase();
}

/**
 * Checks a (normalised) name; returns null when fine or a sentence saying
 * what is wrong. Stricter than SIP (which the peer accepts) so names stay
 * easy to say and type: a-z, 0-9, ".", "_" and "-", starting and ending
 * with a letter or digit.
 */
export function validateName(name) {
  if (!name) return "Choose a name.";
  if (name.length > NAME_MAX) return `A name has at most ${NAME_MAX} characters.`;
  if (!/^[a-z0-9._-]+$/.test(name)) return "Use only letters a–z, digits, '.', '_' and '-'.";
  if (!/^[a-z0-9]/.test(name) || !/[a-z0-9]$/.test(name)) return "Start and end the name with a letter or digit.";
  return null;
}
