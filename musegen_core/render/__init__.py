"""Rendering: audio with FluidSynth (`audio`) and piano-roll figures with plotly (`pianoroll`).

Import from the submodules (`musegen_core.render.audio`, `musegen_core.render.pianoroll`): importing this
package loads neither FluidSynth nor plotly.
"""
