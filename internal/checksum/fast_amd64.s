#include "textflag.h"

// A lane X moved d bits on: X = clmul(X.lo, K.lo) ^ clmul(X.hi, K.hi) ^ next,
// with K the pair of foldConsts for d (see fast.go). X8 and X9 (Y8) are
// scratch registers of the macros.

// FOLD folds lane r (XMM) with K in X15 and the 16 bytes at off(SI).
#define FOLD(r, off) \
	MOVOA     r, X8;          \
	PCLMULQDQ $0x00, X15, X8; \
	PCLMULQDQ $0x11, X15, r;  \
	MOVOU     off(SI), X9;    \
	PXOR      X8, r;          \
	PXOR      X9, r

// FOLDINTO folds lane a 128 bits on into lane b, with K in X15.
#define FOLDINTO(a, b) \
	MOVOA     a, X8;          \
	PCLMULQDQ $0x00, X15, X8; \
	PCLMULQDQ $0x11, X15, a;  \
	PXOR      X8, b;          \
	PXOR      a, b

// VFOLD folds the two lanes of r (YMM) with K in both halves of Y15 and
// the 32 bytes at off(SI).
#define VFOLD(r, off) \
	VPCLMULQDQ $0x00, Y15, r, Y8; \
	VPCLMULQDQ $0x11, Y15, r, r;  \
	VPXOR      off(SI), r, r;     \
	VPXOR      Y8, r, r

// VACC folds the accumulator X13 128 bits on onto lane X9, with K in X14.
#define VACC \
	VPCLMULQDQ $0x00, X14, X13, X8;  \
	VPCLMULQDQ $0x11, X14, X13, X13; \
	VPXOR      X8, X13, X13;         \
	VPXOR      X9, X13, X13

// VACCY folds the accumulator on onto both lanes of y, low then high: xl
// is y's low half.
#define VACCY(y, xl) \
	VMOVDQA      xl, X9; \
	VACC;                \
	VEXTRACTI128 $1, y, X9; \
	VACC

// func foldCLMUL(crc uint64, p []byte, k *[6]uint64) (lo, hi uint64)
//
// Eight 16-byte lanes X0..X7 take p 128 bytes a round, each moved 1024
// bits on a round with k[0:2]; then each lane is folded 128 bits into the
// next with k[2:4], and X7 is returned.
TEXT ·foldCLMUL(SB), NOSPLIT, $0-56
	MOVQ  crc+0(FP), AX
	MOVQ  p_base+8(FP), SI
	MOVQ  p_len+16(FP), CX
	MOVQ  k+32(FP), DX
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	MOVQ  AX, X8
	PXOR  X8, X0
	ADDQ  $128, SI
	SUBQ  $128, CX
	MOVOU 0(DX), X15

loop:
	CMPQ CX, $128
	JB   reduce
	FOLD(X0, 0)
	FOLD(X1, 16)
	FOLD(X2, 32)
	FOLD(X3, 48)
	FOLD(X4, 64)
	FOLD(X5, 80)
	FOLD(X6, 96)
	FOLD(X7, 112)
	ADDQ $128, SI
	SUBQ $128, CX
	JMP  loop

reduce:
	MOVOU 16(DX), X15
	FOLDINTO(X0, X1)
	FOLDINTO(X1, X2)
	FOLDINTO(X2, X3)
	FOLDINTO(X3, X4)
	FOLDINTO(X4, X5)
	FOLDINTO(X5, X6)
	FOLDINTO(X6, X7)
	MOVQ   X7, AX
	PSRLDQ $8, X7
	MOVQ   X7, BX
	MOVQ   AX, lo+40(FP)
	MOVQ   BX, hi+48(FP)
	RET

// func foldVPCLMUL(crc uint64, p []byte, k *[6]uint64) (lo, hi uint64)
//
// foldCLMUL 256 bytes a round: eight 32-byte lanes Y0..Y7, each two
// 16-byte lanes of the fold, moved 2048 bits on a round with k[4:6] in
// both halves; then the sixteen 16-byte lanes, in the order of p, are
// folded into one with k[2:4]. p is a multiple of 256 bytes, at least 256.
// Needs AVX2 and VPCLMULQDQ.
TEXT ·foldVPCLMUL(SB), NOSPLIT, $0-56
	MOVQ           crc+0(FP), AX
	MOVQ           p_base+8(FP), SI
	MOVQ           p_len+16(FP), CX
	MOVQ           k+32(FP), DX
	VMOVDQU        0(SI), Y0
	VMOVDQU        32(SI), Y1
	VMOVDQU        64(SI), Y2
	VMOVDQU        96(SI), Y3
	VMOVDQU        128(SI), Y4
	VMOVDQU        160(SI), Y5
	VMOVDQU        192(SI), Y6
	VMOVDQU        224(SI), Y7
	VMOVQ          AX, X8
	VPXOR          Y8, Y0, Y0
	ADDQ           $256, SI
	SUBQ           $256, CX
	VBROADCASTI128 32(DX), Y15

vloop:
	CMPQ CX, $256
	JB   vreduce
	VFOLD(Y0, 0)
	VFOLD(Y1, 32)
	VFOLD(Y2, 64)
	VFOLD(Y3, 96)
	VFOLD(Y4, 128)
	VFOLD(Y5, 160)
	VFOLD(Y6, 192)
	VFOLD(Y7, 224)
	ADDQ $256, SI
	SUBQ $256, CX
	JMP  vloop

vreduce:
	VMOVDQU 16(DX), X14
	// X13, the fold so far, starts as Y0's low lane.
	VMOVDQA      X0, X13
	VEXTRACTI128 $1, Y0, X9
	VACC
	VACCY(Y1, X1)
	VACCY(Y2, X2)
	VACCY(Y3, X3)
	VACCY(Y4, X4)
	VACCY(Y5, X5)
	VACCY(Y6, X6)
	VACCY(Y7, X7)
	VMOVQ   X13, AX
	VPEXTRQ $1, X13, BX
	MOVQ    AX, lo+40(FP)
	MOVQ    BX, hi+48(FP)
	VZEROUPPER
	RET
