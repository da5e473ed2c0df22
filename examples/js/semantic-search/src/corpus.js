// A small corpus to search: one sentence per document, on varied topics so
// that a query's nearest neighbours are easy to judge by eye.
export const CORPUS = [
  'The cat sat on the warm windowsill all afternoon.',
  'Dogs are loyal companions and love long walks.',
  'A kitten chased a ball of yarn across the living room.',
  'The stock market fell sharply after the interest rate announcement.',
  'Central banks raise rates to slow down inflation.',
  'Investors moved their savings into government bonds.',
  'The recipe calls for two cups of flour and a pinch of salt.',
  'Bake the bread at 220 degrees until the crust is golden.',
  'Fresh basil and tomatoes make a simple summer pasta sauce.',
  'The telescope revealed the rings of Saturn in sharp detail.',
  'Astronomers discovered a planet orbiting a distant star.',
  'A solar eclipse happens when the Moon passes between the Earth and the Sun.',
  'The marathon runner trained for months before the race.',
  'The football team won the championship in extra time.',
  'Rust and WebAssembly make sandboxed code fast and safe.',
  'JavaScript runs in browsers, on servers and inside WebAssembly.',
];
