import pytest

from whisper_ko.text import TranscriptError, normalize, nospace

# (raw label, spelling side, pronunciation side)
CASES = [
    ("(70%)/(칠십 퍼센트) 할인됩니다", "70% 할인됩니다", "칠십 퍼센트 할인됩니다"),
    ("(3시)/(세 시)에 오세요", "3시에 오세요", "세 시에 오세요"),
    ("(010-1234-5678)/(공일공 일이삼사 오육칠팔)로 주세요", "010-1234-5678로 주세요", "공일공 일이삼사 오육칠팔로 주세요"),
    ("(3)(삼) 번 눌러 주세요", "3 번 눌러 주세요", "삼 번 눌러 주세요"),
    ("(AI)/(에이아이) 상담", "AI 상담", "에이아이 상담"),
    ("o/ n/ 네 그 접수는 완료됐어요", "네 그 접수는 완료됐어요", "네 그 접수는 완료됐어요"),
    ("b/ 잠시만요 l/", "잠시만요", "잠시만요"),
    ("그냥l/ 해 주세요", "그냥 해 주세요", "그냥 해 주세요"),
    ("N/ B/ 네", "네", "네"),
    ("u/ i/ 알겠습니다", "알겠습니다", "알겠습니다"),
    ("어/ 그게 음/ 잘 모르겠어요", "어 그게 음 잘 모르겠어요", "어 그게 음 잘 모르겠어요"),
    ("모+ 몬 소리야", "모 몬 소리야", "모 몬 소리야"),
    ("*좋아 보여요", "좋아 보여요", "좋아 보여요"),
    ("@웃음 네 맞아요", "네 맞아요", "네 맞아요"),
    ("(NO:) 네 고객님", "네 고객님", "네 고객님"),
    ("club/ 이름이 뭐죠", "club/ 이름이 뭐죠", "club/ 이름이 뭐죠"),
    ("http://a.b/n/ 여기로 오세요", "http://a.b/n/ 여기로 오세요", "http://a.b/n/ 여기로 오세요"),
    ("  여러   칸   띄어쓰기  ", "여러 칸 띄어쓰기", "여러 칸 띄어쓰기"),
    ("\ufeff안녕하세요", "안녕하세요", "안녕하세요"),
    ("\u1100\u1161\u11a8 NFC", "각 NFC", "각 NFC"),
]


@pytest.mark.parametrize("raw,spelling,pronunciation", CASES)
def test_normalize_sides(raw, spelling, pronunciation):
    assert normalize(raw) == spelling
    assert normalize(raw, side="pronunciation") == pronunciation


def test_fillers_can_be_dropped():
    assert normalize("어/ 그게 음/ 잘 모르겠어요", fillers="drop") == "그게 잘 모르겠어요"


def test_tags_only_label_normalises_to_empty():
    assert normalize("n/ b/ o/") == ""


def test_masked_span_drops_by_default_or_is_removed():
    with pytest.raises(TranscriptError) as err:
        normalize("((xx)) 주소는 여기예요")
    assert err.value.reason == "masked_span"
    assert normalize("((xx)) 주소는 여기예요", masked="remove") == "주소는 여기예요"


@pytest.mark.parametrize("raw", ["(3시/(세 시) 에", "(70%)/(칠십 퍼센트", "닫는 괄호만)"])
def test_unbalanced_parentheses_are_a_reason_not_a_crash(raw):
    with pytest.raises(TranscriptError) as err:
        normalize(raw)
    assert err.value.reason == "malformed_notation"


def test_nospace_removes_spaces_and_punctuation_but_keeps_syllables():
    assert nospace("안녕 하세요, 고객님!  네?") == "안녕하세요고객님네"
    # Hangul is never decomposed into jamo (NFKD would turn 각 into three code points).
    assert len(nospace("각")) == 1
