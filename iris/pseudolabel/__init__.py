"""pseudolabel"""
