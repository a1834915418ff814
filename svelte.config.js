// Svelte 5 in runes mode everywhere. `<script lang="ts">` needs no preprocessor in Svelte 5
// (types are stripped by the compiler); type errors in .svelte files surface in `vite build`.
export default {
  compilerOptions: {
    runes: true,
  },
};
