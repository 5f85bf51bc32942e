; carillon's instruments and master bus in Csound, for timing the same notes against
; carillon's own renderer (see compare.sh). Each instrument does the same kind of work
; per sample as its fundsp graph in src/instrument.rs, with the parameters of
; instruments/*.toml; the master bus follows src/engine/audio.rs and
; config/default.toml ([engine.reverb], [engine.limiter], volume).
;
; Score p-fields of instr 1-3:
;   p2 start (s), p3 duration (s), p4 frequency (Hz),
;   p5 linear gain (recipe gain x velocity), p6 pan (-1 left .. 1 right).
; instr 10 (reverbsc) or instr 11 (a port of carillon's own 8-line network) must be on
; for the whole score, and instr 20 (limiter and output) with it: notes2sco.awk does this.
;
; If instruments/*.toml or config/default.toml change, change the values below with them.

sr     = 48000
ksmps  = 64
nchnls = 2
0dbfs  = 1

; --- instruments/celesta.toml [fm_bell] ---
giCelAttack    = 2.0 / 1000   ; attack_ms
giCelDecay     = 3.2          ; decay_s: time to -60 dB at reference_hz
giCelRef       = 440          ; reference_hz
giCelDecayExp  = 0.45         ; decay_pitch_exponent
giCelModRatio  = 1.0          ; mod_ratio
giCelModIndex  = 1.6          ; mod_index
giCelModTau    = 0.07         ; mod_decay_s (time constant)
giCelPartRatio = 4.0          ; partial_ratio
giCelPartLevel = 0.18         ; partial_level
giCelPartTau   = 0.18         ; partial_decay_s (time constant)

; --- instruments/clavichord.toml [pluck] ---
giClaGainPerS  = 0.12         ; gain_per_second
giClaDamping   = 0.45         ; damping
giClaHold      = 1.5          ; duration_s
giClaRelease   = 90 / 1000    ; release_ms
giClaThinness  = 0.8          ; thinness: high-pass at thinness x f
giClaTone      = 4500         ; tone_hz: low-pass

; --- instruments/violin.toml [bowed] ---
giVioAttack    = 1.1          ; attack_s
giVioHold      = 0.9          ; hold_s
giVioRelease   = 1.6          ; release_s
giVioVibHz     = 5.6          ; vibrato_hz
giVioVibCents  = 12           ; vibrato_cents
giVioVibDelay  = 0.4          ; vibrato_delay_s
giVioDetune    = 4            ; detune_cents
giVioBright    = 3400         ; brightness_hz
giVioQ         = 0.7          ; resonance (the low-pass's Q)

; --- config/default.toml ---
giRevRoom      = 18           ; [engine.reverb] room_size (m)
giRevTime      = 2.8          ; time to -60 dB (s)
giRevDamping   = 0.55         ; damping
giRevWet       = 0.22         ; wet
giLimAttack    = 5 / 1000     ; [engine.limiter] attack_ms: the look-ahead
giLimRelease   = 300 / 1000   ; release_ms
giLimCeiling   = 0.9          ; ceiling
giVolume       = 0.8          ; [engine] volume

; src/engine/audio.rs: every voice ends with a linear fade of this length.
giFade         = 0.005

; src/engine/reverb.rs: each line's one-pole low-pass keeps this much of its last output,
; and the cut-off at which Csound's one-pole (tone, and reverbsc's lines) does the same.
giDampCoef     = limit:i(giRevDamping, 0.01, 1) * 0.7
giDampCut      = sr / (2 * $M_PI) * cosinv(2 - (giDampCoef + 1 / giDampCoef) / 2)
; The diffusers' allpass gain.
giDiffusion    = 0.62

; The dry mix of all voices: the reverb's input.
gaDryL init 0
gaDryR init 0
; Dry plus reverb: the limiter's input.
gaBusL init 0
gaBusR init 0

; Equal-power pan of a mono voice onto the dry bus (src/engine/audio.rs pan_gains).
#define SEND(SIG'PAN) #
  iang_ = (limit:i($PAN, -1, 1) + 1) * $M_PI / 4
  gaDryL = gaDryL + $SIG * cos(iang_)
  gaDryR = gaDryR + $SIG * sin(iang_)
#

; A two-pole low- or high-pass of cut-off F (Hz) and quality Q, as fundsp's
; lowpass_hz/highpass_hz: fundsp runs it as a state-variable filter, which has the
; same transfer function as this biquad (both are the bilinear transform, pre-warped
; at the cut-off, of 1 / (s^2 + s/Q + 1)). Sets ic<N> and ia<N> for biquad's
; coefficients.
#define RBJ(N'F'Q) #
  iw$N = 2 * $M_PI * ($F) / sr
  ic$N = cos(iw$N)
  ia$N = sin(iw$N) / (2 * ($Q))
#

; Raised-cosine envelopes (cosseg) run at the control rate and are interpolated to
; audio rate, as fundsp's lfo() envelopes are (computed every 2 ms, interpolated).

; Célesta: sine FM bell plus one overtone partial (fm_bell).
instr 1
  ifreq = p4
  igain = p5
  it60  = giCelDecay * (giCelRef / ifreq) ^ giCelDecayExp
  imodf = ifreq * giCelModRatio
  idev  = imodf * giCelModIndex           ; peak frequency deviation (Hz)
  ; Strike, ring, and the engine's end fade, on carrier and partial alike.
  ifade = min(giFade, p3 / 2)
  iatk  = min(giCelAttack, p3 / 2 - ifade)
  adecl linseg 0, iatk, 1, p3 - iatk - ifade, 1, ifade, 0
  ; Carrier: -60 dB at it60. Index and partial: exponential with their time constants.
  aamp  expon 1, it60, 0.001
  kdev  expon idev, giCelModTau, idev * exp(-1)
  apamp expon giCelPartLevel, giCelPartTau, giCelPartLevel * exp(-1)
  ; Each sine starts at a random phase, as fundsp's do (seeded per note).
  amod  oscili kdev, imodf, -1, rnd(1)
  acar  oscili aamp, ifreq + amod, -1, rnd(1)
  apart oscili apamp, ifreq * giCelPartRatio, -1, rnd(1)
  asig  = (acar + apart) * adecl * igain
  $SEND(asig'p6)
endin

; Clavichord: Karplus-Strong string, thinned by a high-pass near its fundamental, its
; noise's hiss cut by a low-pass, then damped by the felt (pluck).
instr 2
  ifreq = p4
  igain = p5
  ; Loop gain per period so that gain_per_second survives one second, and a two-point
  ; loop filter whose gain at Nyquist is (1 - damping) times that at DC, as fundsp's
  ; three-point one is.
  iloop = giClaGainPerS ^ (1 / ifreq)
  inyq  = 1 - giClaDamping
  iw1   = iloop * (1 + inyq) / 2
  iw2   = iloop * (1 - inyq) / 2
  ; Held, then a raised-cosine fall over the release: it ends at 0, so the engine's
  ; own end fade is folded in.
  irel  = min(giClaRelease, p3)
  iheld = p3 - irel
  kdamp cosseg 1, iheld, 1, irel, 0
  adamp interp kdamp
  astr  pluck 1, ifreq, ifreq, 0, 5, iw1, iw2
  ; fundsp's highpass_hz(thinness x f, 0.7), then lowpass_hz(tone_hz, 0.5).
  $RBJ(hp'ifreq * giClaThinness'0.7)
  ahp   biquad astr, (1 + ichp) / 2, -(1 + ichp), (1 + ichp) / 2, 1 + iahp, -2 * ichp, 1 - iahp
  $RBJ(lp'giClaTone'0.5)
  alp   biquad ahp, (1 - iclp) / 2, 1 - iclp, (1 - iclp) / 2, 1 + ialp, -2 * iclp, 1 - ialp
  asig  = alp * adamp * igain
  $SEND(asig'p6)
endin

; Violin: two detuned band-limited saws with delayed vibrato, a low-pass, and a
; raised-cosine swell (bowed).
instr 3
  ifreq = p4
  igain = p5
  ; Swell in, hold, swell out, scaled to the note's length if it is cut short.
  iscale = min(1, p3 / (giVioAttack + giVioHold + giVioRelease))
  kswell cosseg 0, giVioAttack * iscale, 1, giVioHold * iscale, 1, giVioRelease * iscale, 0
  aswell interp kswell
  ; Vibrato depth in octaves, rising over half a second after vibrato_delay_s.
  kdepth cosseg 0, giVioVibDelay, 0, 0.5, giVioVibCents / 1200
  kvib1  oscili kdepth, giVioVibHz
  kvib2  oscili kdepth, giVioVibHz * 1.07
  kf1    = ifreq * cent(giVioDetune) * 2 ^ kvib1
  kf2    = ifreq * cent(-giVioDetune) * 2 ^ kvib2
  asaw1  vco2 0.5, kf1, 0, 0.5, rnd(1)
  asaw2  vco2 0.5, kf2, 0, 0.5, rnd(1)
  ; fundsp's lowpass_hz(brightness_hz, resonance).
  $RBJ(lp'giVioBright'giVioQ)
  alp    biquad asaw1 + asaw2, (1 - iclp) / 2, 1 - iclp, (1 - iclp) / 2, 1 + ialp, -2 * iclp, 1 - ialp
  asig   = alp * aswell * igain
  $SEND(asig'p6)
endin

; Reverb with Csound's own 8-line feedback delay network (reverbsc): dry plus wet.
instr 10
  ; reverbsc's lines average about 68 ms; the feedback that loses 60 dB in giRevTime.
  ifb   = 10 ^ (-3 * 0.0684 / giRevTime)
  ; reverbsc damps each line with the same one-pole low-pass as `tone`; this cut-off
  ; gives it carillon's coefficient (damping x 0.7).
  icut  = giDampCut
  awL, awR reverbsc gaDryL, gaDryR, ifb, icut
  gaBusL = gaDryL + giRevWet * awL
  gaBusR = gaDryR + giRevWet * awR
  gaDryL = 0
  gaDryR = 0
endin

; One Schroeder allpass through a delay line (src/engine/reverb.rs Delay::allpass).
#define ALLPASS(IN'OUT'SECONDS) #
  ad_   delayr $SECONDS
  av_   = $IN + giDiffusion * ad_
        delayw av_
  $OUT  = ad_ - giDiffusion * av_
#

; Reverb as carillon builds it: two allpass diffusers a channel, then eight delay lines
; of mutually prime lengths, each damped by a one-pole low-pass and scaled to lose
; 60 dB in giRevTime, mixed through an 8-point Hadamard matrix.
instr 11
  iscale = limit:i(giRevRoom / 18, 0.2, 4)
  ; Delays in seconds, rounded to whole frames as carillon's are.
  #define FR(MS) #round($MS / 1000 * sr) / sr#
  il0 = $FR(29.7 * iscale)
  il1 = $FR(37.1 * iscale)
  il2 = $FR(41.1 * iscale)
  il3 = $FR(43.7 * iscale)
  il4 = $FR(53.9 * iscale)
  il5 = $FR(61.3 * iscale)
  il6 = $FR(67.9 * iscale)
  il7 = $FR(73.1 * iscale)
  #define G(L) #10 ^ (-3 * $L / giRevTime)#
  ig0 = $G(il0)
  ig1 = $G(il1)
  ig2 = $G(il2)
  ig3 = $G(il3)
  ig4 = $G(il4)
  ig5 = $G(il5)
  ig6 = $G(il6)
  ig7 = $G(il7)
  icut = giDampCut

  ; Left: 4.77 then 3.59 ms; right: 5.13 then 3.71 ms.
  id0 = $FR(4.77)
  id1 = $FR(3.59)
  id2 = $FR(5.13)
  id3 = $FR(3.71)
  $ALLPASS(gaDryL'ainL'id0)
  $ALLPASS(ainL'ainL'id1)
  $ALLPASS(gaDryR'ainR'id2)
  $ALLPASS(ainR'ainR'id3)

  ; delayr/delayw pair last in, first out.
  ay0 delayr il0
  ay1 delayr il1
  ay2 delayr il2
  ay3 delayr il3
  ay4 delayr il4
  ay5 delayr il5
  ay6 delayr il6
  ay7 delayr il7
  ax0 = tone(ay0, icut) * ig0
  ax1 = tone(ay1, icut) * ig1
  ax2 = tone(ay2, icut) * ig2
  ax3 = tone(ay3, icut) * ig3
  ax4 = tone(ay4, icut) * ig4
  ax5 = tone(ay5, icut) * ig5
  ax6 = tone(ay6, icut) * ig6
  ax7 = tone(ay7, icut) * ig7
  awL = ax0 - ax2 + ax4 - ax6
  awR = ax1 - ax3 + ax5 - ax7
  ; Fast Walsh-Hadamard transform, unnormalized.
  ab0 = ax0 + ax1
  ab1 = ax0 - ax1
  ab2 = ax2 + ax3
  ab3 = ax2 - ax3
  ab4 = ax4 + ax5
  ab5 = ax4 - ax5
  ab6 = ax6 + ax7
  ab7 = ax6 - ax7
  ac0 = ab0 + ab2
  ac2 = ab0 - ab2
  ac1 = ab1 + ab3
  ac3 = ab1 - ab3
  ac4 = ab4 + ab6
  ac6 = ab4 - ab6
  ac5 = ab5 + ab7
  ac7 = ab5 - ab7
  ainL = ainL * 0.5
  ainR = ainR * 0.5
  delayw (ac3 - ac7) * 0.35355338 + ainR
  delayw (ac2 - ac6) * 0.35355338 + ainL
  delayw (ac1 - ac5) * 0.35355338 + ainR
  delayw (ac0 - ac4) * 0.35355338 + ainL
  delayw (ac3 + ac7) * 0.35355338 + ainR
  delayw (ac2 + ac6) * 0.35355338 + ainL
  delayw (ac1 + ac5) * 0.35355338 + ainR
  delayw (ac0 + ac4) * 0.35355338 + ainL
  gaBusL = gaDryL + giRevWet * awL
  gaBusR = gaDryR + giRevWet * awR
  gaDryL = 0
  gaDryR = 0
endin

; Master: look-ahead limiter under the ceiling, volume, and a last clamp at the ceiling
; (src/engine/audio.rs render_block).
instr 20
  ; Peak of both channels, followed with a fast attack and a slow release; the signal
  ; is delayed by the look-ahead so the gain is down before the peak arrives.
  apeak = max(abs(gaBusL), abs(gaBusR))
  aenv  follow2 apeak, giLimAttack, giLimRelease * 4
  again = (giLimCeiling * giVolume) / limit(aenv * 1.1, 1, 1000000)
  aL    delay gaBusL, giLimAttack
  aR    delay gaBusR, giLimAttack
  outs limit(aL * again, -giLimCeiling, giLimCeiling), limit(aR * again, -giLimCeiling, giLimCeiling)
  gaBusL = 0
  gaBusR = 0
endin
